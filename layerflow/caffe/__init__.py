"""Caffe formats."""
