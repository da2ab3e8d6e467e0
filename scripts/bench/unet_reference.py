"""PyTorch eager reference of seg-model's benchmark U-Net (same architecture, loss, optimiser).

U-Net depth 4, base 16, batch norm, transposed-conv up-sampling; BCE-with-logits + soft Dice;
Adam lr 1e-3; batch 8 of 3x128x128. Prints one JSON line with median step times and
throughputs; usable alone:
    python unet_reference.py --steps 10 --warmup 3
With --serve it keeps one model and answers commands on stdin, one JSON line each, so that
seg-model's `throughput` bench can interleave its rounds with PyTorch's (drift cancels):
    train K   -> {"train_s": [K step times]}
    infer K   -> {"infer_s": [K batch times]}
    quit
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


BATCH_NORM = True


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        norm = (lambda c: nn.BatchNorm2d(c)) if BATCH_NORM else (lambda c: nn.Identity())
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=not BATCH_NORM), norm(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=not BATCH_NORM), norm(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.body(x)


class UNet(nn.Module):
    def __init__(self, cin=3, classes=1, base=16, depth=4):
        super().__init__()
        self.inc = ConvBlock(cin, base)
        self.downs = nn.ModuleList(ConvBlock(base << i, base << (i + 1)) for i in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(base << (i + 1), base << i, 2, stride=2) for i in reversed(range(depth)))
        self.blocks = nn.ModuleList(ConvBlock(base << (i + 1), base << i) for i in reversed(range(depth)))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x):
        x = self.inc(x)
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(F.max_pool2d(x, 2))
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
            x = block(torch.cat([skip, up(x)], 1))
        return self.head(x)


def loss_fn(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-batch-norm", action="store_true")
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()
    global BATCH_NORM
    BATCH_NORM = not args.no_batch_norm
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = UNet().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = (torch.rand(args.batch, 1, args.size, args.size, device=dev) > 0.7).float()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, n):
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return times

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        loss.item()

    def infer():
        with torch.inference_mode():
            model(x).sum().item()

    if args.serve:
        print(json.dumps({"backend": f"pytorch-eager-{dev.type}", "torch": torch.__version__,
                          "threads": torch.get_num_threads()}), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            k = int(cmd[1])
            if cmd[0] == "train":
                model.train()
                print(json.dumps({"train_s": timed(train_step, k)}), flush=True)
            elif cmd[0] == "infer":
                model.eval()
                print(json.dumps({"infer_s": timed(infer, k)}), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {cmd[0]}"}), flush=True)
        return

    model.train()
    timed(train_step, args.warmup)
    train = timed(train_step, args.steps)
    model.eval()
    timed(infer, args.warmup)
    inf = timed(infer, args.steps)
    tm, im = statistics.median(train), statistics.median(inf)
    print(json.dumps({
        "backend": f"pytorch-eager-{dev.type}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_step_median_s": tm,
        "train_images_per_sec": args.batch / tm,
        "infer_batch_median_s": im,
        "infer_images_per_sec": args.batch / im,
    }))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
