"""The cloud link (ARCHITECTURE §7): the wire format both ends share, the MQTT client
settings, the sync stage with its ack window and the clip upload."""
