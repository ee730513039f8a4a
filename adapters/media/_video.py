"""Uploaded videos made ready for DICOM: one H.264 High Profile / Level 4.1 track in an MP4.

DICOM PS3.5 8.2.7 (MPEG-4 AVC/H.264 High Profile / Level 4.1, the transfer syntax
1.2.840.10008.1.2.4.102 of Annex A) wants the encapsulated bit stream inside an MPEG-2 Transport
Stream or an MP4 container (ISO/IEC 14496-12, 14496-14), with PTS/DTS used as coded; the stream
must comply with High Profile / Level 4.1 of ISO/IEC 14496-10 (Table A-1: at most 8192
macroblocks a frame, 245760 a second, 62.5 Mbit/s for High profile) with square pixels, 8-bit
4:2:0. So the result here is an MP4 file, never an Annex B elementary stream:

- an H.264 stream that already fits (Constrained Baseline, Main or High profile, level 4.1 or
  below, yuv420p, square pixels, not turned by a display matrix) is remuxed packet by packet
  into a new MP4, without decoding;
- anything else (HEVC from phones, 4K, 60 fps at 1080p, odd sizes or pixel formats, a video to be
  turned upright, VP8/VP9, MPEG-4 Part 2) is decoded and encoded again with libx264, High
  profile, level 4.1, yuv420p, fitted upright into 1920x1080 (1080x1920 when portrait) with its
  aspect kept, at its own frame rate capped to 30 per second.

Only the video track is kept: audio is dropped (PS3.5 8.2.12 would allow some AAC, but not every
phone's, and a recorded voice is better left in the original upload), and so is every container
and stream metadata item (phones write the GPS position there). The work goes through files in
the caller's spool directory: memory does not grow with the video. PyAV failures on the upload
become ``Unprocessable`` (422).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.filter
from av.container import OutputContainer
from av.video.frame import PictureType

from hub.errors import Unprocessable

__all__ = ["H264Video", "h264_mp4"]

# ISO/IEC 14496-10 Table A-1, Level 4.1, and A.3.1: frame size, macroblock rate, and a frame no
# wider or taller than sqrt(8 * MaxFS) macroblocks; Table A-2: the High profile's bit rate.
_MAX_FRAME_MBS = 8192
_MAX_MB_RATE = 245_760
_MAX_SIDE_MBS = 256
_MAX_BIT_RATE = 62_500_000
_LEVEL = 41
_REMUXABLE_PROFILES = frozenset({"Constrained Baseline", "Main", "High"})  # High decodes them
_BOX = (1920, 1080)  # 1080p fits Level 4.1 at 30 fps; portrait videos get (1080, 1920)
_MAX_RATE = Fraction(30)
# FFmpeg filters that turn a picture upright, by the counter-clockwise turn it needs.
_UPRIGHT: dict[int, list[tuple[str, str | None]]] = {
    0: [],
    90: [("transpose", "cclock")],
    180: [("hflip", None), ("vflip", None)],
    270: [("transpose", "clock")],
}
_X264 = {
    "profile": "high",
    "level": "4.1",
    "preset": "superfast",
    "crf": "20",
    # HRD limits below the Level 4.1 High profile maximum (62.5 Mbit/s, 78.125 Mbit CPB).
    "x264-params": "vbv-maxrate=50000:vbv-bufsize=62500",
}
# PS3.3 C.7.6.1.1.5.1: the Lossy Image Compression Method of each earlier lossy codec.
_LOSSY_METHODS = {
    "h264": "ISO_14496_10",
    "hevc": "ISO_23008_2",
    "mpeg2video": "ISO_13818_2",
    "mjpeg": "ISO_10918_1",
}
_H264_METHOD = _LOSSY_METHODS["h264"]


@dataclass(frozen=True)
class H264Video:
    """An MP4 file of one H.264 track, and what the DICOM Image Pixel, Cine and Multi-frame
    modules say of it (PS3.3 C.7.6.3, C.7.6.5, C.7.6.6)."""

    path: Path
    width: int
    height: int
    frames: int
    frame_rate: Fraction  # frames a second
    lossy_methods: tuple[str, ...]  # PS3.3 C.7.6.1.1.5.1, oldest first
    transcoded: bool


@dataclass(frozen=True)
class _Probe:
    codec: str
    profile: str | None
    level: int
    pix_fmt: str | None
    width: int
    height: int
    sample_aspect: Fraction | None
    rate: Fraction
    bit_rate: int
    rotation: int  # counter-clockwise degrees that make it upright: 0, 90, 180 or 270
    frames: int  # as the container declares them (ISO/IEC 14496-12 stts), 0 when unknown


def h264_mp4(source: str | Path, spool_dir: str | Path) -> H264Video:
    """The video of ``source`` as an H.264 High Profile / Level 4.1 MP4 file created in
    ``spool_dir`` (the caller removes it), remuxed when it already fits, else transcoded.
    422 when the file has no decodable video stream, or fewer frames than its container
    declares (a truncated upload)."""
    os.makedirs(spool_dir, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=spool_dir, suffix=".mp4")
    os.close(handle)
    out = Path(name)
    try:
        probe = _probe(str(source))
        if _fits(probe):
            read = frames = _remux(str(source), out)
            video = H264Video(
                out, probe.width, probe.height, frames, probe.rate, (_H264_METHOD,), False
            )
        else:
            width, height = _upright_size(probe)
            rate = min(probe.rate, _MAX_RATE).limit_denominator(1001)
            read, frames = _transcode(str(source), out, probe.rotation, width, height, rate)
            earlier = _LOSSY_METHODS.get(probe.codec)
            methods = (earlier, _H264_METHOD) if earlier else (_H264_METHOD,)
            video = H264Video(out, width, height, frames, rate, methods, True)
        if read < probe.frames or frames == 0:
            raise Unprocessable(
                f"corrupt video: {read} of its {probe.frames or '?'} frames could be read"
            )
        _make_even(out)
        return video
    except av.FFmpegError as exc:
        out.unlink(missing_ok=True)
        raise Unprocessable(f"corrupt video: {exc}") from exc
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _probe(source: str) -> _Probe:
    """What the first video stream declares, and the turn of its first decoded frame."""
    with av.open(source) as container:
        if not container.streams.video:
            raise Unprocessable("The file has no video stream to wrap")
        stream = container.streams.video[0]
        context = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        if not rate or not context.width or not context.height:
            raise Unprocessable("corrupt video: no frame size or frame rate")
        rotation = None
        for frame in container.decode(stream):
            rotation = round(frame.rotation / 90) * 90 % 360
            break
        if rotation is None:
            raise Unprocessable("corrupt video: no decodable frame")
        sar = stream.sample_aspect_ratio
        return _Probe(
            codec=context.name,
            profile=context.profile,
            level=context.level,
            pix_fmt=context.pix_fmt,
            width=context.width,
            height=context.height,
            sample_aspect=Fraction(sar) if sar else None,
            rate=Fraction(rate),
            bit_rate=context.bit_rate or 0,
            rotation=rotation,
            frames=stream.frames,
        )


def _fits(probe: _Probe) -> bool:
    """Whether the stream already meets PS3.5 8.2.7 for 1.2.840.10008.1.2.4.102 as it is."""
    width_mbs, height_mbs = -(-probe.width // 16), -(-probe.height // 16)
    return (
        probe.codec == "h264"
        and probe.profile in _REMUXABLE_PROFILES
        and 0 < probe.level <= _LEVEL
        and probe.pix_fmt == "yuv420p"
        and probe.sample_aspect in (None, 1)
        and probe.rotation == 0
        and max(width_mbs, height_mbs) <= _MAX_SIDE_MBS
        and width_mbs * height_mbs <= _MAX_FRAME_MBS
        and width_mbs * height_mbs * probe.rate <= _MAX_MB_RATE
        and probe.bit_rate <= _MAX_BIT_RATE
    )


def _remux(source: str, out: Path) -> int:
    """Copy the video packets into a new MP4 (no audio, no metadata); the number of frames."""
    frames = 0
    with av.open(source) as src, av.open(str(out), "w", format="mp4") as dst:
        stream = src.streams.video[0]
        copy = dst.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is None:  # the demuxer's empty packet at the end
                continue
            packet.stream = copy
            dst.mux(packet)
            frames += 1
    return frames


def _upright_size(probe: _Probe) -> tuple[int, int]:
    """The size of the upright picture with square pixels, fitted into ``_BOX`` (turned for a
    portrait picture), in even numbers as 4:2:0 needs."""
    width = probe.width * (probe.sample_aspect or 1)
    height = Fraction(probe.height)
    if probe.rotation in (90, 270):
        width, height = height, width
    box = _BOX if width >= height else _BOX[::-1]
    scale = min(Fraction(1), box[0] / width, box[1] / height)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _transcode(
    source: str, out: Path, rotation: int, width: int, height: int, rate: Fraction
) -> tuple[int, int]:
    """Decode, turn, scale and re-time the video, encode it with libx264 into ``out``; the
    number of packets read and of frames written."""
    read = frames = 0
    with av.open(source) as src, av.open(str(out), "w", format="mp4") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        encoder = dst.add_stream("libx264", rate=rate, options=_X264)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        graph = _filters(stream, rotation, width, height, rate)
        for packet in src.demux(stream):
            read += packet.dts is not None  # not the empty packet that flushes the decoder
            for frame in packet.decode():
                graph.push(frame)
                frames += _drain(graph, encoder, dst)
        graph.push(None)
        frames += _drain(graph, encoder, dst)
        for packet in encoder.encode(None):
            dst.mux(packet)
    return read, frames


def _filters(
    stream: av.VideoStream, rotation: int, width: int, height: int, rate: Fraction
) -> av.filter.Graph:
    """buffer -> turn upright -> scale -> square pixels -> constant frame rate -> yuv420p."""
    graph = av.filter.Graph()
    steps = [
        *_UPRIGHT[rotation],
        ("scale", f"{width}:{height}"),
        ("setsar", "1"),
        ("fps", str(rate)),
        ("format", "yuv420p"),
    ]
    nodes = [graph.add_buffer(template=stream)]
    nodes += [graph.add(name, args) for name, args in steps]
    nodes.append(graph.add("buffersink"))
    graph.link_nodes(*nodes).configure()
    return graph


def _drain(graph: av.filter.Graph, encoder: av.VideoStream, dst: OutputContainer) -> int:
    """Encode every frame the graph has ready; how many there were."""
    count = 0
    while True:
        try:
            frame = graph.pull()
        except (av.BlockingIOError, av.EOFError):
            return count
        assert isinstance(frame, av.VideoFrame)
        frame.pict_type = PictureType.NONE  # x264 chooses the frame types, not the source
        for packet in encoder.encode(frame):
            dst.mux(packet)
        count += 1


def _make_even(path: Path) -> None:
    """Bring the file to an even length, as a DICOM item value must be (PS3.5 7.1.1), with a
    9-byte ``free`` box (ISO/IEC 14496-12 8.1.2), so the MP4 stays exactly an MP4."""
    if path.stat().st_size % 2:
        with open(path, "ab") as fp:
            fp.write(struct.pack(">I4sB", 9, b"free", 0))
