"""433 MHz receiver: pulse sources, decoders, press detection, the rf daemon (issue 3)."""
