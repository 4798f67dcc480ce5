"""popray: popularity of a profile's images and videos with its own audience, on Ray.

Implements Viola, Brunelli & Susto (2021). One module per stage at the package root,
their parts in io/, media/, training/ and tools/; see README.md.
"""

__version__ = "0.1.0"
