"""Evaluating and using EISV models: the library under the eisv tools and the training script's evaluation.

Embedding files of any length (`windowed_embedding`) and storing the result (`embedding_store`);
trial lists (`trials`); scores and error metrics (`scoring`: cosine, AS-norm, EER, minDCF),
calibration fits and Cllr (`calibration`); `evaluation.evaluate_trials` (the groups of a trial
list, used by eisv-eval and training), its report and plots; loading a model by folder or Hub id
(`loading`), the ONNX export and backend (`onnx_export`, `onnx_backend`), changed copies of a model
folder (`model_folder`) and the embedding transforms fitted on unlabelled audio (`adaptation`).
Bad input raises `ToolError` (from `eisv_io.errors`), whose message names the file or row.
"""

from eisv_io.errors import ToolError

__all__ = ["ToolError"]
