"""The image-sync Consumer: each file cut with the IMAGES profile and sent by the off-site uploader.

`store` returns only once every chunk of the file is on the server; its
content ids are `<chunk id>:<length>`, which is what a manifest entry needs.
The batching, the MissingChunks questions and the sending are
agent.offsite.uploader's.

The uploader's stop check (the pass's time budget is spent, the upload window
closed) is asked before each file and each batch; a stop there is a PassCut
for the scanner, at a batch boundary, so what was sent stays sent and nothing
is half stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.images.consumer import FileToStore, PassCut
from agent.images.stream import FileStream
from agent.offsite.uploader import Uploader, UploadStopped, content_id
from common.vault import IMAGES, cut_stream


class _Readable:
    """A FileStream as pyfastcdc reads it (readinto)."""

    def __init__(self, stream: FileStream) -> None:
        self._stream = stream

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ImageUploader:
    """Stores each file's chunks in the off-site store (a scanner Consumer)."""

    def __init__(self, uploader: Uploader) -> None:
        self.uploader = uploader
        self.tally = uploader.tally

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        ids: list[str] = []
        keys = self.uploader.keys
        try:
            why = self.uploader.should_stop()
            if why:
                raise UploadStopped(why)
            for chunk in cut_stream(keys, _Readable(stream), IMAGES):
                ids.append(content_id(chunk.chunk_id, len(chunk.data)))
                self.uploader.add(chunk)
            self.uploader.flush()
        except UploadStopped as stopped:
            self.uploader.drop_pending()
            raise PassCut(stopped.reason) from None
        except BaseException:
            self.uploader.drop_pending()
            raise
        return ids

    def discard(self, file: FileToStore, reason: str) -> None:
        self.tally.files_discarded += 1
