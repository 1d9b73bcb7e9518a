"""The real executor: the same strategies in PyTorch (torch.distributed), with exact byte counts.

Needs the ``torch`` extra. ``comm`` counts payload bytes per rank and category with the simulator's
conventions; ``launch`` runs functions on local ranks (gloo on CPU, NCCL on GPUs) and fails cleanly.
"""
