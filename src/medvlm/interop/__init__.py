"""Checkpoint interoperability: medvlm <-> transformers' Llava and the original LLaVA layout; LoRA merging.

    export_llava(model_dir, out_dir)                        medvlm -> transformers LlavaForConditionalGeneration
    import_llava(src_dir, out_dir, vision_tower=...)        original LLaVA checkpoint (full, projector-only, LoRA)
    merge_adapter(adapter_dir, base_dir, out_dir)           PEFT adapter from medvlm training -> one model folder
See docs/interop.md for what maps and what does not.
"""

from medvlm.interop.llava_export import LlavaExportError, export_llava, to_llava
from medvlm.interop.llava_import import LlavaImport, LlavaImportError, import_llava
from medvlm.interop.merge import AdapterMergeError, load_with_adapter, merge_adapter

__all__ = ["AdapterMergeError", "LlavaExportError", "LlavaImport", "LlavaImportError", "export_llava", "import_llava",
           "load_with_adapter", "merge_adapter", "to_llava"]
