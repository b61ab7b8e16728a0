"""facetrack.models"""
