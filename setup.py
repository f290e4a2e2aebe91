"""memsizer-fairseq: Memsizer (EMNLP 2022) as a fairseq plugin.

torch and fairseq are deliberately not declared: a bare ``torch`` requirement makes pip fetch a
multi-GB CUDA build, and fairseq's metadata pulls torchaudio. Install them first (README), or let
``scripts/setup_venv.sh`` build a pinned environment.
"""
from setuptools import find_packages, setup

setup(
    name="memsizer-fairseq",
    version="0.1.0",
    description="Memsizer (linearized Transformer with key-value memory) for fairseq",
    packages=find_packages(include=["memsizer_fairseq", "memsizer_fairseq.*"]),
    package_data={"memsizer_fairseq": ["config/*.yaml"]},
    python_requires=">=3.9",
    install_requires=["sacrebleu>=2.0", "sentencepiece", "rouge-score", "tqdm", "matplotlib"],
    extras_require={"test": ["pytest", "hypothesis"]},
)
