"""The transformer models, built from `transformers` configuration objects (never `from_pretrained`) with
random weights and eager attention, so the exported graph is plain MatMul/Softmax/Transpose/Reshape."""

from __future__ import annotations

import torch
import transformers
from torch import nn

from .registry import Config, TorchModel

TEXT_AXES = {0: "batch", 1: "seq"}


class LastHiddenState(nn.Module):
    """Calls a transformers model with named tensors and returns its last hidden state."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors)), return_dict=True).last_hidden_state


def _text_model(model: nn.Module, config: Config, token_types: bool) -> TorchModel:
    generator = torch.Generator().manual_seed(0)
    shape = (config["batch"], config["seq"])
    inputs = {"input_ids": torch.randint(0, config["vocab"], shape, generator=generator),
              "attention_mask": torch.ones(shape, dtype=torch.int64)}
    if token_types:
        inputs["token_type_ids"] = torch.zeros(shape, dtype=torch.int64)
    axes = {name: TEXT_AXES for name in inputs} | {"last_hidden_state": TEXT_AXES}
    return TorchModel(LastHiddenState(model.eval(), list(inputs)).eval(), inputs, ["last_hidden_state"], axes)


def _eager(config: transformers.PretrainedConfig) -> transformers.PretrainedConfig:
    config._attn_implementation = "eager"      # MatMul + Softmax attention, as in the paper's graphs
    return config


def bert(config: Config) -> TorchModel:
    """BERT (TinyBERT and BERT-base differ only in the configuration)."""
    cfg = _eager(transformers.BertConfig(vocab_size=config["vocab"], hidden_size=config["hidden"],
                                         num_hidden_layers=config["layers"], num_attention_heads=config["heads"],
                                         intermediate_size=config["intermediate"],
                                         max_position_embeddings=max(512, config["seq"])))
    return _text_model(transformers.BertModel(cfg, add_pooling_layer=False), config, token_types=True)


def distilbert(config: Config) -> TorchModel:
    """DistilBERT: BERT with half the layers, no token types, no pooler."""
    cfg = _eager(transformers.DistilBertConfig(vocab_size=config["vocab"], dim=config["hidden"],
                                               n_layers=config["layers"], n_heads=config["heads"],
                                               hidden_dim=config["intermediate"],
                                               max_position_embeddings=max(512, config["seq"])))
    return _text_model(transformers.DistilBertModel(cfg), config, token_types=False)


def albert(config: Config) -> TorchModel:
    """ALBERT: factorized embeddings and one layer's weights shared by every layer."""
    cfg = _eager(transformers.AlbertConfig(vocab_size=config["vocab"], embedding_size=config["embedding"],
                                           hidden_size=config["hidden"], num_hidden_layers=config["layers"],
                                           num_attention_heads=config["heads"],
                                           intermediate_size=config["intermediate"],
                                           num_hidden_groups=1, inner_group_num=1,
                                           max_position_embeddings=max(512, config["seq"])))
    return _text_model(transformers.AlbertModel(cfg, add_pooling_layer=False), config, token_types=True)


def mobilebert(config: Config) -> TorchModel:
    """MobileBERT: bottlenecked layers with four stacked feed-forward networks and NoNorm (elementwise affine)."""
    cfg = _eager(transformers.MobileBertConfig(vocab_size=config["vocab"], hidden_size=config["hidden"],
                                               num_hidden_layers=config["layers"],
                                               num_attention_heads=config["heads"],
                                               intermediate_size=config["intermediate"],
                                               intra_bottleneck_size=config["bottleneck"],
                                               true_hidden_size=config["bottleneck"],
                                               embedding_size=config["bottleneck"],
                                               num_feedforward_networks=4, normalization_type="no_norm",
                                               trigram_input=True, use_bottleneck=True,
                                               max_position_embeddings=max(512, config["seq"])))
    return _text_model(transformers.MobileBertModel(cfg, add_pooling_layer=False), config, token_types=True)


def gpt2(config: Config) -> TorchModel:
    """GPT-2: pre-norm decoder layers with a causal attention mask."""
    cfg = _eager(transformers.GPT2Config(vocab_size=config["vocab"], n_embd=config["hidden"],
                                         n_layer=config["layers"], n_head=config["heads"],
                                         n_positions=max(1024, config["seq"]), use_cache=False,
                                         bos_token_id=config["vocab"] - 1, eos_token_id=config["vocab"] - 1))
    return _text_model(transformers.GPT2Model(cfg), config, token_types=False)
