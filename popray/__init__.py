"""popray: popularity of a profile's images and videos with its own audience, on Ray.

Implements Viola, Brunelli & Susto (2021). One module per stage; see README.md.
"""

__version__ = "0.1.0"
