"""A real RTSP server on loopback for the soak test: GStreamer's RTSP server (Debian's gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-good) serving a folder of JPEG frames in a loop as RTP/JPEG, at rtsp://127.0.0.1:PORT/cam.

Run with the system python3 (python3-gi): /usr/bin/python3 benchmarks/rtsp_loop_server.py FRAMES_DIR PORT [FPS].
The frames are written by benchmarks/soak.py (a sample video cut small). It runs until SIGTERM/SIGINT.
"""
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """Each client gets its own live pipeline: an appsrc fed the JPEG frames in a loop, timestamped in order."""

    def __init__(self, frames: list[bytes], fps: int):
        super().__init__()
        self.frames, self.fps = frames, fps
        self.set_launch(f"( appsrc name=src is-live=true format=time do-timestamp=true "
                        f"caps=image/jpeg,framerate={fps}/1 ! jpegparse ! rtpjpegpay name=pay0 pt=26 )")
        self.set_shared(False)
        self.connect("media-configure", self._configure)

    def _configure(self, _factory, media) -> None:
        src = media.get_element().get_child_by_name("src")
        state = {"n": 0}
        duration = Gst.SECOND // self.fps

        def push() -> bool:
            data = self.frames[state["n"] % len(self.frames)]
            buf = Gst.Buffer.new_wrapped(data)
            buf.duration = duration  # appsrc stamps it with the running time (do-timestamp)
            state["n"] += 1
            return src.emit("push-buffer", buf) == Gst.FlowReturn.OK  # False (client gone) ends the timer

        GLib.timeout_add(1000 // self.fps, push)


def main(frames_dir: str, port: str, fps: str = "10") -> int:
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    frames = [p.read_bytes() for p in sorted(Path(frames_dir).glob("f*.jpg"))]
    factory = LoopFactory(frames, int(fps))
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"rtsp server: cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"rtsp server: rtsp://127.0.0.1:{port}/cam", file=sys.stderr, flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
