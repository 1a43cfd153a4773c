import importlib
import sys
import unittest

from tests.modal_stub import install


class AppsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        install()
        for name in ("gemma3_vlm_app", "streaming_vlm_app"):
            sys.modules.pop(name, None)
        cls.gemma = importlib.import_module("gemma3_vlm_app")
        cls.streaming = importlib.import_module("streaming_vlm_app")

    def test_names_and_gpu(self):
        self.assertEqual(self.gemma.app.name, "foresight-gemma3-vlm")
        self.assertIn("Gemma3VLMSession", self.gemma.app.classes)
        self.assertEqual(self.gemma.Gemma3VLMSession.modal_options["gpu"], "L40S")
        self.assertEqual(self.streaming.app.name, "foresight-streaming-vlm")
        self.assertIn("StreamingVLMSession", self.streaming.app.classes)

    def session(self, cls):
        from vlm_core import SessionHistories

        s = cls()
        s.max_edge = 64
        s.max_frames = 6
        s.histories = SessionHistories(max_entries=6, max_sessions=4)
        s.generate = lambda images, prompt: (f"A scene with {len(images)} views.", 5)
        return s

    def test_both_classes_share_the_interface_and_keep_history_per_session(self):
        for module, cls_name in ((self.gemma, "Gemma3VLMSession"), (self.streaming, "StreamingVLMSession")):
            with self.subTest(cls_name):
                module.decode_frame = lambda data, max_edge: None if data == b"bad" else data
                s = self.session(getattr(module, cls_name))
                out = s.infer_chunk([b"a", b"bad", b"b"], 0.5, 1.5, "Describe.", "wearer-1")
                self.assertEqual(out["caption"], "A scene with 2 views.")
                self.assertEqual((out["chunk_start_s"], out["chunk_end_s"], out["tokens_generated"]), (0.5, 1.5, 5))
                self.assertEqual(s.histories.get("wearer-1"), ["A scene with 2 views."])
                s.close("wearer-1")
                self.assertEqual(s.histories.get("wearer-1"), [])


if __name__ == "__main__":
    unittest.main()
