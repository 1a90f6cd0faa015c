"""The `tether` command line (`main`), and `tether demo`.

Other layers add their command groups (`tether kafka`, `tether dlq`, `tether saga`) through the
``tether.commands`` entry points, so the runtime never imports the packages that stand on it.
"""
