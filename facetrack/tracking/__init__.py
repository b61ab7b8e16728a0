"""facetrack.tracking"""
