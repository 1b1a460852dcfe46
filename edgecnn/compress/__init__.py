"""Compression (host side): structured pruning (torch-pruning), unstructured magnitude pruning, QAT (torchao pt2e).

Importing the package imports nothing heavy: `edgecnn` registers its subcommands from
`edgecnn.compress.cli` on every start, including `edgecnn run` on a device without torch.
`edgecnn.compress.structure` registers the "pruned" structure loader when it is imported; the
checkpoint reader imports it on meeting a pruned checkpoint.
"""
