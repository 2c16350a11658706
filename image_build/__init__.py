"""systemd units, Debian packaging, Raspberry Pi image stage (see image_build/systemd)."""
