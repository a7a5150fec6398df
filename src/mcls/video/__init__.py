"""Video features: ffmpeg decoding, clip windows, 3D-CNN backbones, batched extraction, feature store.

| module        | owns                                                                        |
|---------------|-----------------------------------------------------------------------------|
| ``ffmpeg``    | the ffmpeg binary, probing (header + packet timestamps), mp4 frame counts   |
| ``clips``     | clip windows (pure): ``clip_windows(n, 16, rule)``                          |
| ``decode``    | ffmpeg decode → scale/crop → rgb24 clips, per-video checks, normalization   |
| ``resnext``   | ResNeXt-101 3D (Hara et al. 2018) and its released checkpoint format        |
| ``backbones`` | the backbone settings table, weights (checkpoint / torchvision / random)    |
| ``extract``   | ``ShardExtractor``: decoder threads → batched model → one shard file        |
| ``failures``  | failure reasons, the manifest, the max-failure-fraction rule                |
| ``store``     | shard writer, merged index, ``FeatureStore`` reader, bit-exact npy import   |
| ``inputs``    | video lists (directory, list file, split tables) and hash sharding          |
| ``cli``       | ``mcls extract`` / ``import-features`` / ``merge-features``                 |
| ``synth``     | synthetic and deliberately broken videos for tests and benchmarks           |

Readers only need ``from mcls.video.store import FeatureStore`` (see docs/features.md).
Nothing here is imported by ``import mcls.video`` itself, so the package stays cheap to import.
"""
