"""File input and output: videos and images as uint8 arrays (:mod:`fastmotion.io.video`)."""
from fastmotion.io.video import (VideoError, count_frames, iter_frames, read_image, read_video, strip_frame_shape,
                                 video_fps, write_image, write_video)

__all__ = ["VideoError", "count_frames", "iter_frames", "read_image", "read_video", "strip_frame_shape", "video_fps",
           "write_image", "write_video"]
