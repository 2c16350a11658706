"""Microphones behind one interface (``base.AudioSource``): ALSA, RTSP/HTTP cameras, files."""
