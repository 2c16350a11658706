"""Audio capture, segment spool, clip slicer, encoders, level meter, retention (issue 4)."""
