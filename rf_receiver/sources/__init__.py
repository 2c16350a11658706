"""Where 433 MHz input comes from: one small interface (``base.RfSource``), one file per
kind of hardware, and a replay source for recorded pulse trains."""
