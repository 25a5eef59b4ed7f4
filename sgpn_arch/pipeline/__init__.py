"""The restoration pipeline: alignment, image files, detection to paste-back, compiled inference, backgrounds."""
