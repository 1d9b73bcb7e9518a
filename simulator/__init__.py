"""dessim: discrete-event simulation of distributed-training communication.

Submodules are imported explicitly (``from simulator.network.fabric import Fabric``) so that importing the
package stays cheap and there are no import cycles.
"""

__version__ = "0.1.0"
