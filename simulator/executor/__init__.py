"""The real executor: the same strategies in PyTorch (torch.distributed), with exact byte counts.

Needs the ``torch`` extra. ``comm``: the instrumented communicator (payload bytes per rank and category,
the simulator's conventions); ``launch``: local ranks (gloo on CPU, NCCL on GPUs) that fail cleanly;
``tables``: table-batched embeddings, owner-sharded or replicated, and DES's ID exchanges;
``sum_models`` (LR, FM) and ``pooled_models`` (DNN, DLRM, W&D, DeepFM): single-process reference and the
DES (fields' or first-layer partials) and DP strategies; ``ps``: synchronous and asynchronous parameter
servers; ``run``: one configuration (local spawner or torchrun); ``calibrate``: microbenchmarks fitted to the
simulator's parameters.
"""

from simulator.options import FCOptions

EXECUTOR_KNN = FCOptions(knn_k=5, knn_rebuild_steps=2)  # what the executor's mp-fc-knn runs (K, T)
