"""What the tests share, in one place: fakes of the product's collaborators (`support.fakes`, `support.servers`)
and helpers for a real Ray Serve (`support.serve`). Imported as `support.<module>`: pytest puts tests/ on sys.path
(rootdir conftest, prepend import mode). Fixtures stay in tests/conftest.py."""
