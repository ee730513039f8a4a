"""Blob storage on the filesystem: content-addressed, streamed, fsynced (``BlobStore`` port)."""

from adapters.filesystem.blobstore import FileBlobStore

__all__ = ["FileBlobStore"]
