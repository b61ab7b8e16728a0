"""facetrack.train"""
