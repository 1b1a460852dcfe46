"""Compression (host side): structured pruning (torch-pruning), unstructured magnitude pruning, QAT (torchao pt2e).

Importing the package imports nothing heavy: `edgecnn` registers its subcommands from
`edgecnn.compress.cli` on every start, including `edgecnn run` on a device without torch.
`edgecnn.compress.structure` rebuilds pruned checkpoints; the checkpoint reader imports it (lazily)
on meeting a pruned checkpoint, and it imports nothing of `train` (no import circle).
"""
