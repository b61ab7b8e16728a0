"""facetrack.codecs"""
