"""A real RTSP server on loopback (GStreamer's gst-rtsp-server, from Debian packages),
playing a 440 Hz tone as 16 kHz L16, like an IP camera's microphone. Run by the system
Python (python3-gi): ``/usr/bin/python3 rtsp_server.py PORT``."""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(sys.argv[1])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch("( audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert ! audioresample "
                   "! audio/x-raw,rate=16000,channels=1 ! rtpL16pay name=pay0 pt=96 )")
factory.set_shared(True)
server.get_mount_points().add_factory("/mic", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
