"""facetrack.metrics"""
