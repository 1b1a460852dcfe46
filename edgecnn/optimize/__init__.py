"""`edgecnn optimize`: the fastest verified bundle within an accuracy budget, measured on the target.

The package import loads nothing (torch is imported by the search when it runs).
"""
