"""``samseg web``: SAMSeg in a browser, on Slicer's own views (trame-slicer), with the same controller as the
desktop module.

A host of the annotation controller (``SAMSegSlicerLib.controller``), like the Slicer module: it injects an
asyncio scheduler and a writer through trame-slicer's segment modifier, routes view events to
``AnnotationController.prompt`` as the desktop effect does, and adds what a browser needs -- a data folder the
server may read and write, uploads and downloads.  Needs the ``web`` extra (trame-slicer, slicer-core).
"""
