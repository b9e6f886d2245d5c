"""Content-matched training data, as the model card built it: real photos described by BLIP, Stable Diffusion
images generated from those descriptions, and Midjourney images found by similar descriptions, so that real
and AI images differ in origin rather than in content.

Four stages, each a plain function that reads and writes manifests (CSV, paths relative to the manifest) and
skips the rows it has already done:

* :mod:`training.dataprep.caption`  ``caption_manifest``: BLIP captions for real photos (manifest + database);
* :mod:`training.dataprep.generate` ``generate_images``: Stable Diffusion images from the captions;
* :mod:`training.dataprep.match`    ``match_midjourney``: for each caption, the most similar Midjourney prompt;
* :mod:`training.dataprep.build`    ``build_manifest``: one training manifest with a split by source.

:mod:`training.dataprep.tasks` wraps them as Celery tasks on the training queue; ``aidetect data ...`` runs
them there or in-process. Heavy dependencies (transformers, diffusers, scikit-learn) are imported when a
stage needs them, so importing this package is cheap.
"""
