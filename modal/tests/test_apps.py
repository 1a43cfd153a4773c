import asyncio
import importlib
import inspect
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

    def classes(self):
        return ((self.gemma, "Gemma3VLMSession", "GEMMA3"), (self.streaming, "StreamingVLMSession", "STREAMING_VLM"))

    def test_names_gpu_scaling_and_concurrency_knobs(self):
        self.assertEqual(self.gemma.app.name, "foresight-gemma3-vlm")
        self.assertEqual(self.streaming.app.name, "foresight-streaming-vlm")
        for module, cls_name, _prefix in self.classes():
            with self.subTest(cls_name):
                cls = module.app.classes[cls_name]
                self.assertEqual(cls.modal_options["gpu"], "L40S")
                self.assertEqual(
                    {k: cls.modal_options[k] for k in ("min_containers", "max_containers", "scaledown_window")},
                    {"min_containers": 0, "max_containers": 4, "scaledown_window": 300},
                )
                # One batch on the GPU while the next gathers.
                self.assertEqual(cls.modal_concurrent, {"max_inputs": 32, "target_inputs": 16})

    def test_knobs_are_read_at_deploy_time(self):
        import os

        os.environ.update({"GEMMA3_MAX_BATCH_SIZE": "4", "GEMMA3_MIN_CONTAINERS": "1", "GEMMA3_GPU": "H100"})
        try:
            sys.modules.pop("gemma3_vlm_app", None)
            module = importlib.import_module("gemma3_vlm_app")
            cls = module.Gemma3VLMSession
            self.assertEqual((cls.modal_options["gpu"], cls.modal_options["min_containers"]), ("H100", 1))
            self.assertEqual(cls.modal_concurrent, {"max_inputs": 8, "target_inputs": 4})
        finally:
            for key in ("GEMMA3_MAX_BATCH_SIZE", "GEMMA3_MIN_CONTAINERS", "GEMMA3_GPU"):
                os.environ.pop(key, None)
            sys.modules.pop("gemma3_vlm_app", None)
            self.gemma = importlib.import_module("gemma3_vlm_app")

    def reimport(self, env):
        """The Gemma app imported as `modal deploy` would with `env` set (restored after)."""
        import os

        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            sys.modules.pop("gemma3_vlm_app", None)
            return importlib.import_module("gemma3_vlm_app")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            sys.modules.pop("gemma3_vlm_app", None)
            importlib.import_module("gemma3_vlm_app")

    def test_every_knob_reaches_the_container_as_the_deployer_set_it(self):
        module = self.reimport({"GEMMA3_MODEL_ID": "google/gemma-3-12b-it", "GEMMA3_MAX_FRAMES_PER_CHUNK": "2", "GEMMA3_BATCH_WAIT_MS": "12.5"})
        env = module.Gemma3VLMSession.modal_options["image"].env_vars()
        self.assertEqual(env["GEMMA3_MODEL_ID"], "google/gemma-3-12b-it")
        self.assertEqual(env["GEMMA3_MAX_FRAMES_PER_CHUNK"], "2")
        self.assertEqual(env["GEMMA3_BATCH_WAIT_MS"], "12.5")
        self.assertEqual(env["GEMMA3_MAX_BATCH_SIZE"], "16")
        self.assertEqual(env["HF_HOME"], "/cache")
        # The container, importing the app under the image's environment, reads the same knobs.
        again = self.reimport(env)
        self.assertEqual(again.KNOBS, module.KNOBS)
        for module, cls_name, prefix in self.classes():
            with self.subTest(cls_name):
                env = getattr(module, cls_name).modal_options["image"].env_vars()
                self.assertEqual(
                    {k for k in env if k.startswith(prefix)},
                    {
                        f"{prefix}_{name}"
                        for name in (
                            "MODEL_ID GPU MAX_BATCH_SIZE BATCH_WAIT_MS MIN_CONTAINERS MAX_CONTAINERS SCALEDOWN_WINDOW_S "
                            "MAX_FRAME_EDGE MAX_FRAMES_PER_CHUNK MAX_HISTORY_ENTRIES MAX_NEW_TOKENS TEMPERATURE TOP_P"
                        ).split()
                    },
                )

    def test_the_images_pin_the_tested_versions_and_qwen_gets_torchvision(self):
        def installed(module, cls_name):
            image = getattr(module, cls_name).modal_options["image"]
            return [pkg for name, args, _ in image.calls if name == "pip_install" for pkg in args]

        gemma = installed(self.gemma, "Gemma3VLMSession")
        qwen = installed(self.streaming, "StreamingVLMSession")
        for packages in (gemma, qwen):
            self.assertIn("torch==2.13.0", packages)
            self.assertIn("transformers==5.18.0", packages)
        # AutoProcessor refuses Qwen2.5-VL without torchvision ("requires `torchvision` to be installed"):
        # the build that pairs with torch 2.13.0.
        self.assertIn("torchvision==0.28.0", qwen)

    def test_a_bad_knob_stops_the_deploy_naming_it(self):
        cases = {
            "GEMMA3_BATCH_WAIT_MS=-1": ({"GEMMA3_BATCH_WAIT_MS": "-1"}, "GEMMA3_BATCH_WAIT_MS must be at least 0, got -1.0"),
            "GEMMA3_MAX_BATCH_SIZE=0": ({"GEMMA3_MAX_BATCH_SIZE": "0"}, "GEMMA3_MAX_BATCH_SIZE must be at least 1, got 0"),
            "GEMMA3_MAX_BATCH_SIZE=16.0": ({"GEMMA3_MAX_BATCH_SIZE": "16.0"}, "GEMMA3_MAX_BATCH_SIZE must be a whole number, got '16.0'"),
            "GEMMA3_MAX_FRAMES_PER_CHUNK=0": ({"GEMMA3_MAX_FRAMES_PER_CHUNK": "0"}, "GEMMA3_MAX_FRAMES_PER_CHUNK must be at least 1, got 0"),
            "GEMMA3_TEMPERATURE=nan": ({"GEMMA3_TEMPERATURE": "nan"}, "GEMMA3_TEMPERATURE must be a finite number, got 'nan'"),
            "GEMMA3_TOP_P=1.5": ({"GEMMA3_TOP_P": "1.5"}, "GEMMA3_TOP_P must be at most 1, got 1.5"),
            "min > max": (
                {"GEMMA3_MIN_CONTAINERS": "5", "GEMMA3_MAX_CONTAINERS": "2"},
                "GEMMA3_MIN_CONTAINERS (5) must not exceed GEMMA3_MAX_CONTAINERS (2)",
            ),
        }
        for name, (env, message) in cases.items():
            with self.subTest(name):
                with self.assertRaises(ValueError) as raised:
                    self.reimport(env)
                self.assertEqual(str(raised.exception), message)

    def test_a_blank_knob_is_its_default(self):
        module = self.reimport({"GEMMA3_MAX_BATCH_SIZE": " ", "GEMMA3_GPU": ""})
        self.assertEqual((module.KNOBS.max_batch_size, module.KNOBS.gpu), (16, "L40S"))

    def session(self, module, cls):
        from vlm_core import ChunkBatcher

        batches = []

        def generate(items):
            batches.append([item.prompt for item in items])
            return [(f"A scene with {len(item.images)} views. More.", 5) for item in items]

        module.decode_frame = lambda data, max_edge: None if data == b"bad" else data
        s = cls()
        s.max_edge = 64
        s.max_frames = 6
        s.max_history = 6
        s.batcher = ChunkBatcher(generate, max_batch_size=8, wait_ms=20)
        return s, batches

    def test_interleaved_sessions_each_carry_their_own_history_and_the_class_keeps_none(self):
        for module, cls_name, _prefix in self.classes():
            with self.subTest(cls_name):
                s, batches = self.session(module, getattr(module, cls_name))

                async def main():
                    return await asyncio.gather(
                        s.infer_chunk([b"a", b"bad", b"b"], 0.5, 1.5, "Describe.", "wearer-1", ["w1 before"]),
                        s.infer_chunk([b"c"], 2.0, 3.0, "Describe.", "wearer-2", ["w2 before"]),
                        # A server of before: five arguments, no history.
                        s.infer_chunk([b"d"], 3.0, 4.0, "Describe.", "wearer-3"),
                    )

                one, two, three = asyncio.run(main())
                self.assertEqual(one["caption"], "A scene with 2 views.")
                self.assertEqual((one["chunk_start_s"], one["chunk_end_s"], one["tokens_generated"]), (0.5, 1.5, 5))
                self.assertEqual(two["caption"], "A scene with 1 views.")
                self.assertEqual(three["chunk_end_s"], 4.0)
                [batch] = batches
                self.assertIn("- w1 before", batch[0])
                self.assertNotIn("w2", batch[0])
                self.assertIn("- w2 before", batch[1])
                self.assertNotIn("Earlier captions", batch[2])
                # Nothing keyed by session stays in the instance.
                for value in vars(s).values():
                    self.assertFalse(isinstance(value, dict) and any(str(k).startswith("wearer") for k in value))
                self.assertIsNone(s.close("wearer-1"))

    def test_history_is_an_optional_sixth_argument(self):
        for module, cls_name, _prefix in self.classes():
            with self.subTest(cls_name):
                params = list(inspect.signature(getattr(module, cls_name).infer_chunk).parameters.values())
                self.assertEqual([p.name for p in params], ["self", "frames", "start_ts_s", "end_ts_s", "prompt", "session_id", "history"])
                self.assertIsNone(params[-1].default)


if __name__ == "__main__":
    unittest.main()
