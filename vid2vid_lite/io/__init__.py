"""Video and frame-folder I/O: one reader (:func:`open_source`) and one writer (:func:`open_sink`)."""

from .base import Frame, VideoInfo
from .frames import IMAGE_SUFFIXES, FolderSink, FolderSource
from .open import Sink, Source, check_writable, frame_timestamps, is_video_path, open_sink, open_source, read_video, write_video
from .video import VIDEO_SUFFIXES, VideoSink, VideoSource

__all__ = [
    "Frame", "VideoInfo", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "FolderSink", "FolderSource",
    "VideoSink", "VideoSource", "Sink", "Source", "check_writable", "frame_timestamps", "is_video_path",
    "open_sink", "open_source", "read_video", "write_video",
]
