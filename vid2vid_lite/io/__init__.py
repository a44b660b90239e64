"""Video and frame-folder I/O: one reader (:func:`open_source`) and one writer (:func:`open_sink`)."""

from .base import Frame, VideoInfo
from .formats import IMAGE_SUFFIXES, READABLE_VIDEO_SUFFIXES, WRITABLE_VIDEO_SUFFIXES, list_images
from .frames import FolderSink, FolderSource
from .open import Sink, Source, check_writable, frame_timestamps, is_video_path, open_sink, open_source, read_video, write_video
from .video import VideoSource
from .writer import VideoSink

__all__ = [
    "Frame", "VideoInfo", "IMAGE_SUFFIXES", "READABLE_VIDEO_SUFFIXES", "WRITABLE_VIDEO_SUFFIXES", "list_images",
    "FolderSink", "FolderSource",
    "VideoSink", "VideoSource", "Sink", "Source", "check_writable", "frame_timestamps", "is_video_path",
    "open_sink", "open_source", "read_video", "write_video",
]
