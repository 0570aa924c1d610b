"""The FER2013 tutorial network in PyTorch (issue 37's test model): three conv blocks
Conv3x3 -> BatchNorm -> RReLU -> MaxPool (64/128/256 channels), then FC 9216-4096-1024-256-7.
Input: N x 1 x 48 x 48 grey faces, histogram-equalised, 0-1 (NCHW); output: 7 logits (FER2013 labels).
`fer-convert model.pth --torch-class benchmarks/torch_tutorial_net.py:TutorialNet` reads a state_dict of it."""
import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.RReLU(), nn.MaxPool2d(2))


class TutorialNet(nn.Module):
    def __init__(self, classes: int = 7):
        super().__init__()
        self.features = nn.Sequential(_block(1, 64), _block(64, 128), _block(128, 256))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(9216, 4096), nn.RReLU(), nn.Linear(4096, 1024), nn.RReLU(),
            nn.Linear(1024, 256), nn.RReLU(), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_and_export(state_dict: str, folder) -> tuple:
    """The trained network from its state_dict, saved as the two other files fer-convert reads:
    (folder/tutorial.pt2 by torch.export, folder/tutorial.onnx by torch.onnx.export)."""
    from pathlib import Path

    net = TutorialNet()
    net.load_state_dict(torch.load(state_dict, weights_only=True))
    net.eval()
    example = (torch.rand(1, 1, 48, 48),)
    pt2, onnx = Path(folder) / "tutorial.pt2", Path(folder) / "tutorial.onnx"
    torch.export.save(torch.export.export(net, example), pt2)
    torch.onnx.export(net, example, onnx, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}}, dynamo=False)
    return pt2, onnx
