"""SAMSegSlicerLib: Segment Anything for 3-D medical volumes, free of any Slicer dependency.

The Slicer module ``SAMSegSlicer`` is a thin layer over this package; everything it does is
available here as plain Python (and from the ``samseg`` command line).
"""

__version__ = "0.1.0"
