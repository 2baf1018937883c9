"""What the Slicer application provides to SAMSeg's Qt-free controller: a QTimer that polls it, writes through
the SAMSeg Segment Editor effect, and the installation of SAMSeg's Python packages into Slicer's Python."""
