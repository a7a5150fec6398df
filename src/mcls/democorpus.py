"""The embedded demo corpus: a deterministic, synthetic How2-MCLS-layout corpus with real mp4s.

It is small enough to run the whole pipeline in minutes on 2 cores, and built so that every
ingredient of the method matters:

* **Video-only information.** Each video shows a background colour and (maybe) a texture
  pattern; neither is ever said in the transcript, but the summary names both
  ("… with a *red* brush on a *striped* mat …"). A text-only model can only guess them.
* **A different source language.** Portuguese (and Chinese) transcripts are sentence-by-
  sentence translations of the English one, with different word order (Pt adjectives follow
  the noun: "the small brush" → "o pincel pequeno") and different lengths; Chinese is written
  without spaces and tokenized by character.
* **Abundant English-only data.** ``pretrain`` (How2-MS-like: English transcript + summary)
  is several times larger than the cross-lingual ``train`` split.
* **Something to summarize.** The transcript mentions the tool actually used and a
  distractor tool, the activity, the speaker and filler sentences; the summary keeps the
  speaker, the activity, the right tool, plus the colour and pattern only the video shows.

Everything comes from one seed: text files, the attribute table and the video bytes
(x264 runs single-threaded so the encoded streams are byte-identical across runs).
"""

from __future__ import annotations

import logging
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, write_json
from .errors import McLSError
from .video.ffmpeg import ffmpeg_exe

log = logging.getLogger(__name__)

SPLITS = ("pretrain", "train", "val", "test")
SRC_LANGS = ("pt", "zh")

# (English infinitive phrase, Portuguese, Chinese, category)
ACTIVITIES = [
    ("paint a fence", "pintar uma cerca", "油漆栅栏", "home"),
    ("bake bread", "assar pão", "烤面包", "cooking"),
    ("tune a guitar", "afinar um violão", "给吉他调音", "music"),
    ("plant tomatoes", "plantar tomates", "种西红柿", "gardening"),
    ("fold a shirt", "dobrar uma camisa", "叠衬衫", "home"),
    ("clean a window", "limpar uma janela", "擦窗户", "home"),
    ("sharpen a knife", "afiar uma faca", "磨刀", "cooking"),
    ("wash a dog", "dar banho em um cachorro", "给狗洗澡", "pets"),
    ("fix a bike tire", "consertar um pneu de bicicleta", "修自行车轮胎", "sports"),
    ("draw a portrait", "desenhar um retrato", "画肖像", "art"),
    ("make a smoothie", "fazer uma vitamina", "做奶昔", "cooking"),
    ("stretch your back", "alongar as costas", "拉伸背部", "fitness"),
    ("juggle three balls", "fazer malabarismo com três bolas", "抛接三个球", "hobbies"),
    ("tie a scarf", "amarrar um cachecol", "系围巾", "fashion"),
    ("polish shoes", "engraxar sapatos", "擦鞋", "fashion"),
    ("carve a pumpkin", "esculpir uma abóbora", "雕刻南瓜", "holidays"),
]

# (English noun, Portuguese noun, Portuguese gender, Chinese)
TOOLS = [
    ("brush", "pincel", "m", "刷子"),
    ("sponge", "esponja", "f", "海绵"),
    ("towel", "toalha", "f", "毛巾"),
    ("knife", "faca", "f", "刀"),
    ("bowl", "tigela", "f", "碗"),
    ("bucket", "balde", "m", "水桶"),
    ("cloth", "pano", "m", "布"),
    ("spoon", "colher", "f", "勺子"),
    ("board", "tábua", "f", "木板"),
    ("box", "caixa", "f", "盒子"),
    ("bottle", "garrafa", "f", "瓶子"),
    ("basket", "cesta", "f", "篮子"),
]

# (English, Portuguese masculine, Portuguese feminine, Chinese)
ADJECTIVES = [
    ("small", "pequeno", "pequena", "小"),
    ("big", "grande", "grande", "大"),
    ("old", "velho", "velha", "旧"),
    ("new", "novo", "nova", "新"),
    ("wooden", "de madeira", "de madeira", "木制"),
    ("plastic", "de plástico", "de plástico", "塑料"),
]

NAMES = ["john", "maria", "karen", "paul", "linda", "tom", "ana", "mike", "sara", "david"]

# Video-only attributes: colour name → RGB; patterns drawn over the background.
COLORS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "purple": (140, 50, 170), "orange": (240, 140, 30), "white": (235, 235, 235), "black": (25, 25, 25),
}
PATTERNS = ("plain", "striped", "dotted", "checkered")

FILLERS = [
    ("make sure you work slowly .", "certifique-se de trabalhar devagar .", "一定要慢慢来。"),
    ("this part is really important .", "esta parte é muito importante .", "这一步非常重要。"),
    ("do not rush this step .", "não apresse esta etapa .", "这一步不要着急。"),
    ("it takes a little practice .", "isso exige um pouco de prática .", "这需要一点练习。"),
    ("keep your hands clean while you work .", "mantenha as mãos limpas enquanto trabalha .", "工作时保持双手干净。"),
    ("you can see it right here .", "vocês podem ver aqui mesmo .", "你们可以在这里看到。"),
    ("now let 's move on to the next step .", "agora vamos passar para a próxima etapa .", "现在我们进入下一步。"),
    ("i have been doing this for many years .", "eu faço isso há muitos anos .", "我做这个已经很多年了。"),
    ("be careful not to hurt yourself .", "tome cuidado para não se machucar .", "小心不要伤到自己。"),
    ("take your time and relax .", "não tenha pressa e relaxe .", "慢慢来，放轻松。"),
]

_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 7
    pretrain: int = 480
    train: int = 120
    val: int = 24
    test: int = 40
    min_frames: int = 16
    max_frames: int = 32
    fps: float = 8.0
    width: int = 160
    height: int = 120
    videos: bool = True

    def count(self, split: str) -> int:
        return int(getattr(self, split))


@dataclass
class Video:
    video_id: str
    activity: int
    tool: int
    adjective: int
    distractor: int
    name: str
    color: str
    pattern: str
    fillers: list[int]
    frames: int
    motion: tuple[float, float, float, float]  # start x, start y, dx, dy of the moving square
    noise_seed: int


# ----------------------------------------------------------------------------------------
# text

def _np_en(tool: int, adj: int, definite: bool) -> str:
    noun = TOOLS[tool][0]
    a = ADJECTIVES[adj][0]
    if definite:
        return f"the {a} {noun}"
    art = "an" if a[0] in "aeiou" else "a"
    return f"{art} {a} {noun}"


def _np_pt(tool: int, adj: int, definite: bool) -> str:
    _, noun, gender, _ = TOOLS[tool]
    a = ADJECTIVES[adj][1 if gender == "m" else 2]
    if definite:
        art = "o" if gender == "m" else "a"
    else:
        art = "um" if gender == "m" else "uma"
    return f"{art} {noun} {a}"          # Portuguese: the adjective follows the noun


def _np_zh(tool: int, adj: int) -> str:
    return ADJECTIVES[adj][3] + TOOLS[tool][3]


def _bare_np(tool: int, lang: str) -> str:
    en, pt, gender, zh = TOOLS[tool]
    if lang == "en":
        return f"a {en}"
    if lang == "pt":
        return f"{'um' if gender == 'm' else 'uma'} {pt}"
    return zh


def transcripts(v: Video) -> dict[str, str]:
    """English, Portuguese and Chinese transcripts of one video (parallel, sentence by sentence)."""
    act_en, act_pt, act_zh, _ = ACTIVITIES[v.activity]
    sents: list[tuple[str, str, str]] = [
        (f"hi , i 'm {v.name} and today i will show you how to {act_en} .",
         f"oi , eu sou {v.name} e hoje vou mostrar a vocês como {act_pt} .",
         f"大家好，我是{v.name}，今天我来教大家怎么{act_zh}。"),
        (f"you could use {_bare_np(v.distractor, 'en')} , but i prefer {_np_en(v.tool, v.adjective, True)} .",
         f"você poderia usar {_bare_np(v.distractor, 'pt')} , mas eu prefiro {_np_pt(v.tool, v.adjective, True)} .",
         f"你也可以用{_bare_np(v.distractor, 'zh')}，但我更喜欢用{_np_zh(v.tool, v.adjective)}。"),
    ]
    fill = [FILLERS[i] for i in v.fillers]
    half = len(fill) // 2
    sents += fill[:half]
    sents.append(
        (f"first , take {_np_en(v.tool, v.adjective, True)} and hold it firmly .",
         f"primeiro , pegue {_np_pt(v.tool, v.adjective, True)} e segure com firmeza .",
         f"首先，拿起{_np_zh(v.tool, v.adjective)}，握紧它。"))
    sents += fill[half:]
    sents.append(
        (f"now repeat the same movement with {_np_en(v.tool, v.adjective, True)} until you are done .",
         f"agora repita o mesmo movimento com {_np_pt(v.tool, v.adjective, True)} até terminar .",
         f"现在用{_np_zh(v.tool, v.adjective)}重复同样的动作，直到完成。"))
    sents.append(
        (f"and that is how you {act_en} . thanks for watching .",
         f"e é assim que você pode {act_pt} . obrigado por assistir .",
         f"这就是{act_zh}的方法。谢谢观看。"))
    return {
        "en": " ".join(s[0] for s in sents),
        "pt": " ".join(s[1] for s in sents),
        "zh": "".join(s[2] for s in sents),
    }


def summary(v: Video) -> str:
    """The English summary: speaker, activity and tool from the transcript; colour and pattern from the video."""
    act_en, _, _, category = ACTIVITIES[v.activity]
    tool = TOOLS[v.tool][0]
    art = "an" if v.color[0] in "aeiou" else "a"
    if v.pattern == "plain":
        return f"learn how to {act_en} with {art} {v.color} {tool} from {v.name} in this free {category} video ."
    return (f"{v.name} shows how to {act_en} using {art} {v.color} {tool} on a {v.pattern} mat "
            f"in this free {category} video .")


# ----------------------------------------------------------------------------------------
# sampling

def _video_id(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_ID_ALPHABET, size=11))


def sample_videos(spec: DemoSpec) -> dict[str, list[Video]]:
    rng = np.random.default_rng([spec.seed, 20221207])
    colors = list(COLORS)
    seen: set[str] = set()
    out: dict[str, list[Video]] = {}
    for split in SPLITS:
        vids = []
        for _ in range(spec.count(split)):
            vid = _video_id(rng)
            while vid in seen:
                vid = _video_id(rng)
            seen.add(vid)
            tool = int(rng.integers(len(TOOLS)))
            distractor = int(rng.integers(len(TOOLS) - 1))
            distractor += distractor >= tool
            n_fill = int(rng.integers(1, 4))
            vids.append(Video(
                video_id=vid,
                activity=int(rng.integers(len(ACTIVITIES))),
                tool=tool,
                adjective=int(rng.integers(len(ADJECTIVES))),
                distractor=distractor,
                name=NAMES[int(rng.integers(len(NAMES)))],
                color=colors[int(rng.integers(len(colors)))],
                pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
                fillers=[int(i) for i in rng.choice(len(FILLERS), size=n_fill, replace=False)],
                frames=int(rng.integers(spec.min_frames, spec.max_frames + 1)),
                motion=tuple(float(x) for x in rng.uniform([0.1, 0.1, -3, -3], [0.9, 0.9, 3, 3])),
                noise_seed=int(rng.integers(2**31)),
            ))
        out[split] = vids
    return out


# ----------------------------------------------------------------------------------------
# video

def render_frames(v: Video, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: colour background, pattern texture, a moving square, noise."""
    base = np.array(COLORS[v.color], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    if v.pattern == "striped":
        mask = (yy // 10) % 2 == 0
    elif v.pattern == "dotted":
        mask = ((yy % 20 - 10) ** 2 + (xx % 20 - 10) ** 2) < 25
    elif v.pattern == "checkered":
        mask = ((yy // 16) + (xx // 16)) % 2 == 0
    else:
        mask = np.zeros((height, width), dtype=bool)
    shade = base * 0.45 if base.mean() > 100 else np.minimum(base + 110, 255)
    frame0 = np.where(mask[..., None], shade, base)
    rng = np.random.default_rng(v.noise_seed)
    frames = np.empty((v.frames, height, width, 3), dtype=np.uint8)
    x0, y0, dx, dy = v.motion
    side = max(4, min(width, height) // 6)
    for t in range(v.frames):
        f = frame0 * (1.0 + 0.04 * np.sin(t / 3.0)) + rng.normal(0, 3, size=frame0.shape)
        cx = int((x0 * width + dx * t) % (width - side))
        cy = int((y0 * height + dy * t) % (height - side))
        f[cy:cy + side, cx:cx + side] = 255 - base  # the "tool": complementary colour square
        frames[t] = np.clip(f, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    t, h, w, _ = frames.shape
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-threads", "1", "-x264-params", "threads=1", "-g", str(max(1, t)),
        "-movflags", "+faststart", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-map_metadata", "-1",
        str(path),
    ]
    proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise McLSError(f"ffmpeg failed writing {path} (exit {proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")


# ----------------------------------------------------------------------------------------
# corpus

def _write_lines(path: Path, lines: list[str]) -> None:
    # Like the How2-MCLS release, the last line has no trailing newline.
    path.write_text("\n".join(lines), encoding="utf-8")


def generate(out_dir: str | Path, spec: DemoSpec = DemoSpec(), workers: int = 2) -> dict:
    """Write the demo corpus to `out_dir` atomically; returns a summary dict."""
    if spec.min_frames > spec.max_frames:
        raise McLSError(f"demo min_frames {spec.min_frames} > max_frames {spec.max_frames}")
    out_dir = Path(out_dir)
    videos = sample_videos(spec)
    with atomic_dir(out_dir) as tmp:
        rows = ["video_id\tsplit\tactivity\ttool\tdistractor\tname\tcolor\tpattern\tframes"]
        for split, vids in videos.items():
            texts = [transcripts(v) for v in vids]
            _write_lines(tmp / f"{split}_action.txt", [v.video_id for v in vids])
            _write_lines(tmp / f"{split}_art_en.txt", [t["en"] for t in texts])
            if split != "pretrain":
                for lang in SRC_LANGS:
                    _write_lines(tmp / f"{split}_art_{lang}.txt", [t[lang] for t in texts])
            _write_lines(tmp / f"{split}_sum.txt", [summary(v) for v in vids])
            for v in vids:
                rows.append("\t".join([
                    v.video_id, split, ACTIVITIES[v.activity][0], TOOLS[v.tool][0], TOOLS[v.distractor][0],
                    v.name, v.color, v.pattern, str(v.frames)]))
        (tmp / "demo_attributes.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        if spec.videos:
            (tmp / "videos").mkdir()
            all_videos = [v for vids in videos.values() for v in vids]

            def encode(v: Video) -> None:
                write_mp4(tmp / "videos" / f"{v.video_id}.mp4", render_frames(v, spec.width, spec.height), spec.fps)

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for _ in pool.map(encode, all_videos):
                    pass
        info = {"seed": spec.seed, "counts": {s: len(v) for s, v in videos.items()},
                "videos": spec.videos, "fps": spec.fps, "size": [spec.width, spec.height]}
        write_json(tmp / "demo_corpus.json", info)
    return info


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="corpus directory to (re)write")
    p.add_argument("--seed", type=int, default=DemoSpec.seed)
    for split in SPLITS:
        p.add_argument(f"--{split}", type=int, default=DemoSpec().count(split), help=f"videos in {split}")
    p.add_argument("--min-frames", type=int, default=DemoSpec.min_frames)
    p.add_argument("--max-frames", type=int, default=DemoSpec.max_frames)
    p.add_argument("--fps", type=float, default=DemoSpec.fps)
    p.add_argument("--width", type=int, default=DemoSpec.width)
    p.add_argument("--height", type=int, default=DemoSpec.height)
    p.add_argument("--no-videos", action="store_true", help="text only (no mp4 files)")
    p.add_argument("--workers", type=int, default=2, help="parallel ffmpeg encoders")


def main(args) -> int:
    spec = DemoSpec(seed=args.seed, pretrain=args.pretrain, train=args.train, val=args.val, test=args.test,
                    min_frames=args.min_frames, max_frames=args.max_frames, fps=args.fps,
                    width=args.width, height=args.height, videos=not args.no_videos)
    info = generate(args.out, spec, workers=args.workers)
    log.info("demo corpus %s: %s", args.out, info["counts"])
    return 0
