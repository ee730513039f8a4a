"""Videos made ready for DICOM (``_video``) and wrapped as Video Photographic, Endoscopic and
Microscopic Images (``_wrap.wrap_video``): real clips made with PyAV, read back with PyAV and
pydicom, checked by dciodvfy."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_fragments
from pydicom.uid import (
    MPEG4HP41,
    VideoEndoscopicImageStorage,
    VideoMicroscopicImageStorage,
    VideoPhotographicImageStorage,
)

from adapters.media import _images
from adapters.media._video import H264Video, _make_even, h264_mp4
from adapters.media._wrap import wrap_video
from hub.errors import PayloadTooLarge, Unprocessable
from tests.integration.media import samples
from tests.unit.adapters.media.test_media_wrap import EXPECTED_WARNINGS, attributes

Clip = Callable[..., Path]


@pytest.fixture
def clip(tmp_path: Path) -> Clip:
    """``clip(name, ...)``: a short clip written with PyAV, a white block in its top-left corner
    of the coded picture (to see where it ends up), optionally with AAC audio and metadata."""

    def make(
        name: str, codec: str = "libx264", size: tuple[int, int] = (320, 240), frames: int = 10,
        rate: int = 15, pix_fmt: str = "yuv420p", rotation: int | None = None,
        sample_aspect: Fraction | None = None, audio: bool = False,
        metadata: dict[str, str] | None = None, options: dict[str, str] | None = None,
    ) -> Path:  # fmt: skip
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            container.metadata.update(metadata or {})
            stream = container.add_stream(codec, rate=rate, options=options or {})
            stream.width, stream.height = size
            stream.pix_fmt = pix_fmt
            if sample_aspect:
                stream.codec_context.sample_aspect_ratio = sample_aspect
            if rotation is not None:
                stream.set_display_rotation(rotation)
            sound = container.add_stream("aac", rate=48000) if audio else None
            picture = np.full((size[1], size[0], 3), 40, np.uint8)
            picture[: size[1] // 4, : size[0] // 4] = 255
            for _ in range(frames):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
            if sound is not None:
                for i in range(5):
                    silence = np.zeros((1, 1024), np.float32)
                    chunk = av.AudioFrame.from_ndarray(silence, format="fltp", layout="mono")
                    chunk.sample_rate, chunk.pts = 48000, i * 1024
                    container.mux(sound.encode(chunk))
                container.mux(sound.encode(None))
        return path

    return make


def written(tmp_path: Path, data: bytes, name: str = "upload.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def decoded(path: Path | bytes) -> tuple[av.VideoStream, list[av.VideoFrame], dict[str, str]]:
    """The video stream's facts, every decoded frame and the container metadata."""
    source: Any = str(path) if isinstance(path, Path) else io.BytesIO(path)
    with av.open(source) as container:
        assert len(container.streams) == 1, "only the video track is kept"
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream, frames, dict(container.metadata)


def assert_level_41(video: H264Video) -> None:
    """ISO/IEC 14496-10 High profile, Level 4.1 (Table A-1), 4:2:0, as PS3.5 8.2.7 wants."""
    stream, frames, _ = decoded(video.path)
    context = stream.codec_context
    assert context.name == "h264"
    assert context.profile in ("High", "Main", "Constrained Baseline")
    assert 0 < context.level <= 41
    assert context.pix_fmt == "yuv420p"
    assert (context.width, context.height) == (video.width, video.height)
    assert len(frames) == video.frames
    assert stream.sample_aspect_ratio in (None, 1)
    macroblocks = -(-video.width // 16) * -(-video.height // 16)
    assert macroblocks <= 8192 and macroblocks * video.frame_rate <= 245_760
    assert video.path.stat().st_size % 2 == 0
    assert video.path.read_bytes()[4:8] == b"ftyp"


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [bytes(p) for p in container.demux(stream) if p.dts is not None]


# --------------------------------------------------------------------------- remux


def test_an_h264_mp4_is_remuxed_unchanged(tmp_path: Path) -> None:
    source = written(tmp_path, samples.mp4(codec="libx264"))
    video = h264_mp4(source, tmp_path / "spool")
    assert not video.transcoded
    assert (video.width, video.height, video.frames) == (320, 240, 30)
    assert video.frame_rate == 15
    assert video.lossy_methods == ("ISO_14496_10",)
    assert_level_41(video)
    assert packets(video.path) == packets(source)  # the coded pictures, byte for byte
    assert video.path.parent == tmp_path / "spool"


def test_a_quicktime_h264_is_remuxed_into_an_mp4(tmp_path: Path) -> None:
    source = written(tmp_path, samples.mov(), "IMG_0001.MOV")
    assert source.read_bytes()[8:12] == b"qt  "
    video = h264_mp4(source, tmp_path)
    assert not video.transcoded
    assert video.path.read_bytes()[8:12] == b"isom"  # ISO/IEC 14496-14, not QuickTime
    assert packets(video.path) == packets(source)
    assert_level_41(video)


def test_audio_and_metadata_are_left_behind(tmp_path: Path, clip: Clip) -> None:
    source = clip("phone.mp4", audio=True, metadata={"location": "+48.8577+002.2950/"})
    with av.open(str(source)) as container:
        assert len(container.streams.audio) == 1
        assert "location" in container.metadata
    video = h264_mp4(source, tmp_path)
    assert not video.transcoded
    _, _, metadata = decoded(video.path)  # one stream: asserted there
    assert "location" not in metadata
    assert b"+48.8577" not in video.path.read_bytes()


def test_720p_at_60_fits_level_41_as_it_is(tmp_path: Path, clip: Clip) -> None:
    # 3600 macroblocks x 60 = 216000 a second, within Level 4.1's 245760 (Table A-1)
    video = h264_mp4(clip("p60.mp4", size=(1280, 720), rate=60, frames=4), tmp_path)
    assert not video.transcoded
    assert video.frame_rate == 60


# --------------------------------------------------------------------------- transcode


def test_hevc_is_transcoded_to_h264_high_level_41(tmp_path: Path) -> None:
    source = written(tmp_path, samples.mp4(codec="libx265", size=(330, 250)))
    video = h264_mp4(source, tmp_path)
    assert video.transcoded
    assert (video.width, video.height, video.frames, video.frame_rate) == (330, 250, 30, 15)
    assert video.lossy_methods == ("ISO_23008_2", "ISO_14496_10")
    assert_level_41(video)


@pytest.mark.parametrize(
    ("size", "upright"), [((2560, 1440), (1920, 1080)), ((1440, 2560), (1080, 1920))]
)
def test_a_picture_past_level_41_is_fitted_into_1080p(
    tmp_path: Path, clip: Clip, size: tuple[int, int], upright: tuple[int, int]
) -> None:
    video = h264_mp4(clip("big.mp4", size=size, frames=2), tmp_path)
    assert video.transcoded
    assert (video.width, video.height) == upright
    assert_level_41(video)


def test_1080p_at_60_is_brought_to_30_frames_a_second(tmp_path: Path, clip: Clip) -> None:
    video = h264_mp4(clip("p60.mp4", size=(1920, 1080), rate=60, frames=6), tmp_path)
    assert video.transcoded
    assert video.frame_rate == 30
    assert video.frames == 3
    assert_level_41(video)


@pytest.mark.parametrize(
    ("name", "changes", "size"),
    [
        ("yuv444.mp4", {"pix_fmt": "yuv444p"}, (320, 240)),  # High 4:4:4 Predictive
        ("full-range.mp4", {"pix_fmt": "yuvj420p"}, (320, 240)),  # YBR_PARTIAL_420 is partial
        ("odd.webm", {"codec": "libvpx-vp9", "size": (331, 251)}, (330, 250)),  # 4:2:0 is even
        ("mpeg4.mp4", {"codec": "mpeg4"}, (320, 240)),  # MPEG-4 Part 2
        ("anamorphic.mp4", {"sample_aspect": Fraction(4, 3)}, (426, 240)),  # square pixels
    ],
)
def test_what_does_not_fit_is_transcoded(
    tmp_path: Path, clip: Clip, name: str, changes: dict[str, Any], size: tuple[int, int]
) -> None:
    video = h264_mp4(clip(name, **changes), tmp_path)
    assert video.transcoded
    assert (video.width, video.height, video.frames) == (*size, 10)
    assert_level_41(video)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_turned_video_is_made_upright(tmp_path: Path, clip: Clip, rotation: int) -> None:
    source = clip("portrait.mp4", rotation=rotation)
    video = h264_mp4(source, tmp_path)
    assert video.transcoded
    assert (video.width, video.height) == ((320, 240) if rotation == 180 else (240, 320))
    assert_level_41(video)
    # the same picture as the upright poster frame of the original (``_images``)
    with av.open(str(source)) as container:
        poster = np.asarray(_images._upright_frame(next(container.decode(video=0))))
    _, frames, _ = decoded(video.path)
    assert frames[0].rotation == 0
    upright = frames[0].to_ndarray(format="rgb24")
    assert np.abs(upright.astype(int) - poster.astype(int)).mean() < 8


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x00\x00\x00\x18ftypmp42" + bytes(4000), "corrupt video"),
        (samples.wav(), "no video stream"),
    ],
)
def test_what_is_not_a_video_is_422(tmp_path: Path, data: bytes, words: str) -> None:
    spool = tmp_path / "spool"
    with pytest.raises(Unprocessable, match=words):
        h264_mp4(written(tmp_path, data), spool)
    assert list(spool.iterdir()) == []


def test_a_truncated_video_is_422(tmp_path: Path) -> None:
    """The index first (``+faststart``), then 70 % of the pictures: it opens, and its first
    frame decodes, but 9 of its 30 frames are missing."""
    whole = tmp_path / "whole.mp4"
    with av.open(str(whole), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(30):
            picture = samples.gradient(320, 240).rotate(i * 3)
            container.mux(stream.encode(av.VideoFrame.from_image(picture)))
        container.mux(stream.encode(None))
    data = whole.read_bytes()
    spool = tmp_path / "spool"
    with pytest.raises(Unprocessable, match="of its 30 frames could be read"):
        h264_mp4(written(tmp_path, data[: len(data) * 7 // 10]), spool)
    assert list(spool.iterdir()) == []


def test_an_odd_length_mp4_gets_a_free_box(tmp_path: Path) -> None:
    video = h264_mp4(written(tmp_path, samples.mp4(codec="libx264")), tmp_path)
    with open(video.path, "ab") as fp:  # flip the parity with a 9-byte free box of our own
        fp.write(struct.pack(">I4sB", 9, b"free", 7))
    size = video.path.stat().st_size
    assert size % 2 == 1
    _make_even(video.path)
    assert video.path.stat().st_size == size + 9
    assert video.path.read_bytes()[-9:] == b"\x00\x00\x00\x09free\x00"
    _, frames, _ = decoded(video.path)
    assert len(frames) == 30


# --------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize(
    ("modality", "sop_class", "iod"),
    [
        ("", VideoPhotographicImageStorage, "VideoPhotographicImage"),
        ("XC", VideoPhotographicImageStorage, "VideoPhotographicImage"),
        ("ES", VideoEndoscopicImageStorage, "VideoEndoscopicImage"),
        ("GM", VideoMicroscopicImageStorage, "VideoMicroscopicImage"),
    ],
)
def test_a_video_is_wrapped_as_a_video_iod(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any], modality: str, sop_class: str,
    iod: str,
) -> None:  # fmt: skip
    video = h264_mp4(written(tmp_path, samples.mp4(codec="libx265", size=(330, 250))), tmp_path)
    attrs = attributes(modality=modality)
    path = wrap_video(video, attrs=attrs, path=tmp_path / "video.dcm")
    result = assert_dicom_conforms(path)
    assert result.iod == iod
    assert set(result.warnings) <= EXPECTED_WARNINGS, result.warnings
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == MPEG4HP41
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == sop_class
    assert ds.Modality == (modality or "XC")
    assert ds.PatientID == "MRN-42" and ds.AccessionNumber == "ACC-7"
    assert ds.AdmissionID == "enc-123" and ds.ImageLaterality == "L"
    assert ds.AnatomicRegionSequence[0].CodeValue == "69536005"
    # PS3.5 8.2.7: the pixel description of the stream
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (3, "YBR_PARTIAL_420")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (8, 8, 7, 0)
    assert ds.PlanarConfiguration == 0
    assert "PixelAspectRatio" not in ds
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (250, 330, 30)
    # Cine and Multi-frame (PS3.3 C.7.6.5, C.7.6.6)
    assert ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == pytest.approx(1000 / 15, abs=0.001)
    assert ds.CineRate == 15
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == ["ISO_23008_2", "ISO_14496_10"]
    # PS3.5 A.4: an empty Basic Offset Table, then the MP4 as one fragment
    assert ds.PixelData[:8] == b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    bot, *fragments = generate_fragments(ds.PixelData)
    assert bot == b""
    assert fragments == [video.path.read_bytes()]
    stream, frames, _ = decoded(fragments[0])
    assert len(frames) == ds.NumberOfFrames
    assert (stream.codec_context.width, stream.codec_context.height) == (ds.Columns, ds.Rows)


def test_a_remuxed_video_says_h264_only(
    tmp_path: Path, assert_dicom_conforms: Callable[..., Any]
) -> None:
    video = h264_mp4(written(tmp_path, samples.mp4(codec="libx264")), tmp_path)
    path = wrap_video(video, attrs=attributes(), path=tmp_path / "video.dcm")
    assert_dicom_conforms(path)
    ds = pydicom.dcmread(path)
    assert ds.LossyImageCompressionMethod == "ISO_14496_10"
    assert (ds.Rows, ds.Columns, ds.NumberOfFrames) == (240, 320, 30)


def test_the_video_is_copied_not_held_in_memory(tmp_path: Path) -> None:
    mp4 = tmp_path / "big.mp4"
    with open(mp4, "wb") as fp:  # 64 MiB of stand-in bytes: wrap_video does not parse them
        fp.truncate(64 << 20)
    video = H264Video(mp4, 320, 240, 30, Fraction(15), ("ISO_14496_10",), False)
    tracemalloc.start()
    try:
        path = wrap_video(video, attrs=attributes(), path=tmp_path / "big.dcm")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB held while wrapping 64 MiB"
    assert path.stat().st_size > 64 << 20


def test_a_video_too_big_for_one_fragment_is_413(tmp_path: Path) -> None:
    mp4 = tmp_path / "huge.mp4"
    with open(mp4, "wb") as fp:  # sparse: 2^32 bytes on paper, nothing on disk
        fp.truncate(1 << 32)
    video = H264Video(mp4, 320, 240, 30, Fraction(15), ("ISO_14496_10",), False)
    with pytest.raises(PayloadTooLarge):
        wrap_video(video, attrs=attributes(), path=tmp_path / "huge.dcm")
    assert not os.path.exists(tmp_path / "huge.dcm")
