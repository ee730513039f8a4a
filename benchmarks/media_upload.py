"""Encounter-based uploads (issue 10): ``POST /media`` throughput and the server's peak memory.

Measured, each on a fresh ``pixelhub serve`` (channels dicom, dicomweb, media) so its peak RSS
(VmHWM) belongs to that case alone:

- ``--photos`` distinct ~10 MB phone JPEGs (noise, with EXIF and GPS), one after the other:
  MB/s and seconds per photo, without and with DICOM wrapping (``wrap=dicom``);
- one ``--video-mb`` MB MP4 (a short encoded clip followed by an ISO-BMFF ``free`` box up to the
  size: the container a camera pads to, read by the poster-frame step like any clip): MB/s, peak
  RSS;
- DICOM wrapping of video (``wrap=dicom``) on a ``--wrap-seconds`` 1280x720 25 fps clip of
  noise (the worst case for an encoder): as H.264, which is remuxed into the Video Photographic
  object, and as MPEG-4 Part 2, which is transcoded to H.264 first: MB/s, seconds, frames/s;
- renditions per second (``render_views`` on the 10 MB photo: full decode, thumbnail, preview).

Peers on the same machine, as ratios: Orthanc storing the very DICOM objects PixelHub made of the
photos (``POST /instances``, the REST upload of a DICOM archive), and a plain copy of the same
bytes to a file with ``fsync`` (the disk's own speed).

    .venv/bin/python benchmarks/media_upload.py --photos 20 --video-mb 500
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from dicom_ingest import TOKEN, Orthanc, PixelHub, peak_rss
from PIL import Image

from adapters.media._images import render_views

RESULTS = Path(__file__).parent / "results"
MB = 1024 * 1024


# --------------------------------------------------------------------------- data


def noise_jpeg(target_mb: float = 10.0) -> bytes:
    """A phone-like JPEG of about ``target_mb`` MB: noise compresses badly, EXIF with GPS."""
    rng = np.random.default_rng(7)
    side = int((target_mb * MB / 0.95) ** 0.5)  # noise at quality 92: ~0.95 byte a pixel
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Apple", "iPhone 15"
    exif.get_ifd(0x8769)[0x9003] = "2026:11:27 16:50:00"
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0)})
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue()


def distinct(jpeg: bytes, n: int) -> bytes:
    """``jpeg`` with a comment segment (COM, T.81 B.2.4.5) naming ``n``: other bytes, same image."""
    text = f"capture {n}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def noise_clip(path: Path, codec: str, seconds: int) -> None:
    """``seconds`` of 1280x720 25 fps noise at about 20 Mbit/s, encoded with ``codec``
    (``libx264``: High profile within Level 4.1, or ``mpeg4``: MPEG-4 Part 2)."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height = 1280, 720
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            # within Level 4.1 (<= 50 Mbit/s), so the wrapping keeps the stream as it is
            stream.options = {
                "preset": "veryfast",
                "profile": "high",
                "level": "4.1",
                "x264-params": "bitrate=20000:vbv-maxrate=40000:vbv-bufsize=40000",
            }
        else:
            stream.bit_rate = 20_000_000
        rng = np.random.default_rng(5)
        frames = [rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8) for _ in range(25)]
        for n in range(seconds * 25):
            image = av.VideoFrame.from_ndarray(frames[n % 25], format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def padded_mp4(path: Path, megabytes: int) -> None:
    """A 2 s encoded clip, then a ``free`` box (ISO/IEC 14496-12 8.1.2) up to ``megabytes``."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 640, 480
        stream.pix_fmt = "yuv420p"
        rng = np.random.default_rng(3)
        for _ in range(50):
            frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    clip = out.getvalue()
    padding = megabytes * MB - len(clip)
    with open(path, "wb") as fp:
        fp.write(clip)
        fp.write(struct.pack(">I", 1) + b"free" + struct.pack(">Q", padding))
        chunk = bytes(MB)
        left = padding - 16
        while left > 0:
            fp.write(chunk[: min(left, MB)])
            left -= MB


# --------------------------------------------------------------------------- cases


def patient(client: httpx.Client) -> str:
    r = client.post(
        "/fhir/Patient",
        json={
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.3.999", "value": "BENCH-1"}],
            "name": [{"family": "Bench"}],
        },
    )
    r.raise_for_status()
    return f"Patient/{r.json()['id']}"


def upload(client: httpx.Client, path: Path, mime: str, fields: dict[str, str]) -> dict[str, Any]:
    with open(path, "rb") as fp:
        r = client.post("/media", data=fields, files={"file": (path.name, fp, mime)})
    if r.status_code != 201:
        raise SystemExit(f"upload of {path.name} failed: {r.status_code} {r.text[:300]}")
    return dict(r.json())


def run_case(
    workdir: Path, files: list[Path], mime: str, *, wrap: bool, fetch: bool = True
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    hub = PixelHub(workdir, PIXELHUB_CHANNELS="dicom,dicomweb,media")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{hub.http}", headers=headers, timeout=600
        ) as client:
            who = patient(client)
            idle = peak_rss(hub.proc.pid)
            fields = {"patient": who, "ology": "wound-care", "wrap": "dicom" if wrap else "none"}
            docs = []
            started = time.perf_counter()
            for path in files:
                docs.append(upload(client, path, mime, fields))
            seconds = time.perf_counter() - started
            size = sum(p.stat().st_size for p in files)
            figures = {
                "files": len(files),
                "mb": round(size / MB, 1),
                "seconds": round(seconds, 2),
                "mb_per_s": round(size / MB / seconds, 1),
                "seconds_per_file": round(seconds / len(files), 3),
                "peak_rss_mb": round(peak_rss(hub.proc.pid) / MB, 1),
                "rss_before_mb": round(idle / MB, 1),
            }
            if wrap and fetch:  # the wrapped objects, for Orthanc to store
                figures["dicom"] = fetch_dicom(client, docs, workdir / "wrapped")
    finally:
        hub.stop()
        shutil.rmtree(hub.data, ignore_errors=True)
    return figures, docs


def fetch_dicom(client: httpx.Client, docs: list[dict[str, Any]], folder: Path) -> list[str]:
    """The DICOM objects PixelHub made (WADO-RS, one part each), for the Orthanc comparison."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, doc in enumerate(docs):
        url = next(
            c["attachment"]["url"] for c in doc["content"]
            if c["attachment"]["contentType"] == "application/dicom"
        )  # fmt: skip
        body = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
        body.raise_for_status()
        part = body.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
        path = folder / f"{n}.dcm"
        path.write_bytes(part)
        paths.append(str(path))
    return paths


def orthanc_rate(workdir: Path, paths: list[str]) -> dict[str, Any]:
    orthanc = Orthanc(workdir)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{orthanc.http}", timeout=600) as client:
            started = time.perf_counter()
            for path in paths:
                r = client.post("/instances", content=Path(path).read_bytes())
                r.raise_for_status()
            seconds = time.perf_counter() - started
        size = sum(os.path.getsize(p) for p in paths)
        return {
            "mb_per_s": round(size / MB / seconds, 1),
            "peak_rss_mb": round(peak_rss(orthanc.proc.pid) / MB, 1),
        }
    finally:
        orthanc.stop()


def disk_rate(files: list[Path], folder: Path) -> float:
    """MB/s of copying the files with fsync: what the disk allows."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for n, path in enumerate(files):
        with open(path, "rb") as src, open(folder / f"{n}", "wb") as dst:
            shutil.copyfileobj(src, dst, MB)
            dst.flush()
            os.fsync(dst.fileno())
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return sum(p.stat().st_size for p in files) / MB / seconds


def renditions_per_second(path: Path, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        render_views(str(path), max_pixels=120_000_000)
    return rounds / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--photo-mb", type=float, default=10.0)
    parser.add_argument("--video-mb", type=int, default=500)
    parser.add_argument("--thumbnail-rounds", type=int, default=10)
    parser.add_argument("--wrap-seconds", type=int, default=20, help="video wrapped as DICOM")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pixelhub-media-bench-"))
    try:
        jpeg = noise_jpeg(args.photo_mb)
        photos = []
        for n in range(args.photos):
            path = workdir / f"photo-{n}.jpg"
            path.write_bytes(distinct(jpeg, n))
            photos.append(path)
        video = workdir / "clip.mp4"
        padded_mp4(video, args.video_mb)
        results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count()}
        results["disk_copy_mb_per_s"] = round(disk_rate(photos, workdir / "copy"), 1)
        results["photos"], _ = run_case(workdir, photos, "image/jpeg", wrap=False)
        wrapped, _ = run_case(workdir, photos, "image/jpeg", wrap=True)
        results["photos_wrapped"] = {k: v for k, v in wrapped.items() if k != "dicom"}
        results["orthanc_instances"] = orthanc_rate(workdir, wrapped["dicom"])
        results["video"], _ = run_case(workdir, [video], "video/mp4", wrap=False)
        for codec, case in (
            ("libx264", "video_wrapped_remux"),
            ("mpeg4", "video_wrapped_transcode"),
        ):
            clip = workdir / f"{codec}.mp4"
            noise_clip(clip, codec, args.wrap_seconds)
            figures, _ = run_case(workdir, [clip], "video/mp4", wrap=True, fetch=False)
            figures["frames_per_s"] = round(args.wrap_seconds * 25 / figures["seconds"], 1)
            results[case] = figures
        results["renditions_per_s"] = round(
            renditions_per_second(photos[0], args.thumbnail_rounds), 2
        )
        results["ratios"] = {
            "photo_upload_vs_disk_copy": round(
                results["photos"]["mb_per_s"] / results["disk_copy_mb_per_s"], 3
            ),
            "wrapped_photo_upload_vs_orthanc_store": round(
                results["photos_wrapped"]["mb_per_s"] / results["orthanc_instances"]["mb_per_s"],
                3,
            ),
            "video_upload_vs_disk_copy": round(
                results["video"]["mb_per_s"] / results["disk_copy_mb_per_s"], 3
            ),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "media_upload.json").write_text(text)


if __name__ == "__main__":
    main()
