"""Audio capture, segment spool, clip slicer, encoders, level meter (issue 4)."""
