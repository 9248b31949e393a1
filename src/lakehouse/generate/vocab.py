"""Small vocabularies the generator draws from (Korean and Latin text, models, categories).

Large text columns (``rationale``, ``chunk_text``) are built once per run from sentence pools
with the run's random generator, so every row is a ``take`` from a few hundred strings."""

from __future__ import annotations

import numpy as np

FAMILY_KO = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권", "황"]
FAMILY_LATIN = [
    "kim",
    "lee",
    "park",
    "choi",
    "jung",
    "kang",
    "cho",
    "yoon",
    "jang",
    "lim",
    "han",
    "oh",
    "seo",
    "shin",
    "kwon",
    "hwang",
]
GIVEN_KO = [
    "민준",
    "서연",
    "도윤",
    "서윤",
    "시우",
    "지우",
    "하준",
    "하윤",
    "주원",
    "지유",
    "지호",
    "채원",
    "예준",
    "수아",
    "유준",
    "지아",
    "건우",
    "다은",
    "현우",
    "은서",
    "우진",
    "예린",
    "선우",
    "소율",
]
GIVEN_LATIN = [
    "minjun",
    "seoyeon",
    "doyoon",
    "seoyun",
    "siwoo",
    "jiwoo",
    "hajun",
    "hayoon",
    "juwon",
    "jiyu",
    "jiho",
    "chaewon",
    "yejun",
    "sua",
    "yujun",
    "jia",
    "geonwoo",
    "daeun",
    "hyunwoo",
    "eunseo",
    "woojin",
    "yerin",
    "sunwoo",
    "soyul",
]
NICK_SUFFIX = ["", "_eco", ".green", "_recycle", "99", "_kr", ".dev", "_zero"]
EMAIL_DOMAINS = [
    "gmail.com",
    "naver.com",
    "kakao.com",
    "daum.net",
    "icloud.com",
    "hanmail.net",
    "outlook.com",
]
EMAIL_DOMAIN_P = [0.32, 0.30, 0.12, 0.08, 0.08, 0.05, 0.05]
PROVIDERS = ["kakao", "google", "apple", "email"]
PROVIDER_P = [0.45, 0.25, 0.10, 0.20]
BCRYPT_ALPHABET = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

SCAN_STATUSES = ["pending", "completed", "failed"]
CATEGORIES = ["plastic", "glass", "paper", "can", "vinyl", "styrofoam", "food_waste", "general"]
CATEGORY_P = [0.26, 0.08, 0.17, 0.09, 0.14, 0.05, 0.09, 0.12]
CATEGORY_KO = {
    "plastic": "플라스틱",
    "glass": "유리병",
    "paper": "종이류",
    "can": "캔류",
    "vinyl": "비닐류",
    "styrofoam": "스티로폼",
    "food_waste": "음식물 쓰레기",
    "general": "일반 쓰레기",
}
ITEMS = {
    "plastic": [
        "pet_bottle",
        "plastic_container",
        "plastic_cup",
        "shampoo_bottle",
        "yogurt_cup",
        "bottle_cap",
    ],
    "glass": ["glass_bottle", "soju_bottle", "beer_bottle", "glass_jar"],
    "paper": ["cardboard_box", "newspaper", "milk_carton", "paper_cup", "magazine", "paper_bag"],
    "can": ["aluminum_can", "steel_can", "spray_can", "tuna_can"],
    "vinyl": ["plastic_bag", "snack_wrapper", "bubble_wrap", "ramen_wrapper", "cling_film"],
    "styrofoam": ["styrofoam_box", "styrofoam_tray", "packing_peanuts"],
    "food_waste": ["fruit_peel", "leftover_rice", "vegetable_scraps", "coffee_grounds"],
    "general": ["tissue", "receipt", "ceramic_cup", "toothbrush", "chicken_bone", "eggshell"],
}
ITEM_LIST = sorted({i for items in ITEMS.values() for i in items})
ITEM_INDEX = {name: i for i, name in enumerate(ITEM_LIST)}
CATEGORY_ITEMS = [np.array([ITEM_INDEX[i] for i in ITEMS[c]], dtype=np.int16) for c in CATEGORIES]

STAGES = ["vision", "embedding", "answer"]
LLM_STATUSES = ["ok", "error", "timeout"]
# model vocabulary: index -> name; per stage the choices and probabilities
MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-3-5-haiku",
]
STAGE_MODELS = {
    "vision": ([0, 1, 2], [0.70, 0.22, 0.08]),
    "embedding": ([3, 4], [0.9, 0.1]),
    "answer": ([0, 1, 5], [0.78, 0.15, 0.07]),
}
RERUN_MODELS = ([1, 2], [0.8, 0.2])
PROMPT_VERSIONS = ["v3.1", "v3.2", "v3.3", "v4.0"]

POSITIVE_COMMENTS = [
    "정확해요, 감사합니다!",
    "라벨 떼고 버리는 거 맞죠? 덕분에 알았어요",
    "설명이 자세해서 좋아요",
    "Great answer, thanks",
    "분리배출 표시랑 똑같네요",
]
NEGATIVE_COMMENTS = [
    "뚜껑은 플라스틱이라 따로 버려야 해요",
    "이건 일반 쓰레기예요",
    "음식물이 묻어서 재활용이 안 돼요",
    "컵라면 용기는 스티로폼이 아니에요",
    "Wrong, this is glass not plastic",
    "종이팩은 종이류와 따로 배출해야 합니다",
    "사진이 흐려서 그런 것 같아요",
    "분리배출 표시가 PP로 되어 있어요",
]
COMMENTS = POSITIVE_COMMENTS + NEGATIVE_COMMENTS

_RATIONALE_SENTENCES = [
    "이미지에서 투명한 몸체와 얇은 목 부분이 확인되며, 표면의 반사 패턴이 {cat} 재질의 특징과 일치합니다.",
    "라벨에 인쇄된 분리배출 표시를 판독한 결과 {cat}(으)로 분류하는 것이 가장 타당합니다.",
    "물체의 가장자리가 매끄럽고 두께가 균일하여 성형 공정으로 만들어진 제품으로 판단됩니다.",
    "내용물이 일부 남아 있는 것으로 보이므로 헹군 뒤 배출하도록 안내해야 합니다.",
    "뚜껑과 몸체의 재질이 다를 수 있으므로 분리하여 배출하는 것을 권장합니다.",
    "지자체 분리배출 가이드라인(환경부 2025년 개정판)에 따르면 이 품목은 {cat} 수거함에 배출합니다.",
    "이물질이 심하게 묻은 경우에는 재활용이 어려워 일반 쓰레기로 처리해야 할 수 있습니다.",
    "사진의 조명이 어두워 색상 판별의 신뢰도가 다소 낮지만 형태 정보만으로도 판단이 가능합니다.",
    "유사한 외형의 다른 품목과 비교했을 때 무게감과 광택이 {cat} 쪽에 더 가깝습니다.",
    "부착된 스티커와 테이프는 제거한 후 배출해야 재활용 공정에서 품질이 저하되지 않습니다.",
    "압착이 가능한 형태이므로 부피를 줄여 배출하면 수거 효율이 높아집니다.",
    "복합 재질로 보이는 부분이 있으나 주된 재질을 기준으로 {cat}(으)로 분류했습니다.",
    "The object shows a uniform cross-section and a recycling mark consistent with {en}.",
    "Confidence is reduced slightly because part of the item is occluded by the user's hand.",
    "Residue detection: low. Label present: yes. Cap present: uncertain.",
    "아파트 단지의 요일별 배출 규정이 다를 수 있으니 관리사무소 안내를 함께 확인하세요.",
    "투명 페트병은 별도 수거 대상이므로 라벨을 제거하고 찌그러뜨려 배출하는 것이 좋습니다.",
    "깨진 유리는 신문지로 감싸 일반 쓰레기 종량제 봉투에 담아 배출해야 합니다.",
    "기름이나 양념이 묻은 포장재는 세척 후에도 오염이 남으면 재활용되지 않습니다.",
    "모델이 추출한 시각적 특징: 색상 분포, 재질 질감, 형태 윤곽, 인쇄 문자, 분리배출 마크.",
]

_CHUNK_SENTENCES = [
    "{cat}은(는) 내용물을 비우고 물로 헹군 뒤 배출합니다.",
    "라벨, 뚜껑 등 다른 재질은 제거하여 해당 재질별로 분리배출합니다.",
    "오염이 심해 세척이 어려운 경우 종량제 봉투에 담아 일반 쓰레기로 배출합니다.",
    "공동주택은 지정된 요일과 장소에, 단독주택은 문 앞에 배출합니다.",
    "{cat} 분리배출 시 부피를 줄이기 위해 압착하거나 접어서 배출해 주세요.",
    "재활용 마크가 있더라도 이물질이 섞이면 선별장에서 폐기될 수 있습니다.",
    "대형 폐기물은 주민센터 또는 온라인으로 신고 후 스티커를 부착해 배출합니다.",
    "음식물 쓰레기는 물기를 최대한 제거한 뒤 전용 용기에 배출합니다.",
    "동물 뼈, 조개껍데기, 달걀 껍데기는 음식물이 아닌 일반 쓰레기입니다.",
    "스티로폼 완충재는 테이프와 운송장을 제거하고 흰색만 재활용으로 배출합니다.",
]


def build_rationales(
    rng: np.random.Generator, long: bool, per_category: int = 32
) -> tuple[list[str], np.ndarray]:
    """Rationale texts per category. ``long``: > 2 KB UTF-8 (out-of-line TOAST storage)."""
    texts: list[str] = []
    owner: list[int] = []
    target = 2300 if long else 300
    for ci, cat in enumerate(CATEGORIES):
        ko = CATEGORY_KO[cat]
        for v in range(per_category):
            parts = [f"[판정 근거 #{ci:02d}{v:03d}] 분류: {ko} ({cat})."]
            size = len(parts[0].encode())
            while size < target + int(rng.integers(0, 900 if long else 200)):
                s = _RATIONALE_SENTENCES[int(rng.integers(len(_RATIONALE_SENTENCES)))]
                s = s.format(cat=ko, en=cat.replace("_", " "))
                parts.append(s)
                size += len(s.encode()) + 1
            texts.append(" ".join(parts))
            owner.append(ci)
    return texts, np.array(owner, dtype=np.int16)


def build_chunks(
    rng: np.random.Generator, per_category: int = 40
) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """RAG chunks: (document_id, chunk_id, chunk_text) per category."""
    docs, chunk_ids, texts, owner = [], [], [], []
    for ci, cat in enumerate(CATEGORIES):
        ko = CATEGORY_KO[cat]
        for j in range(per_category):
            doc = f"guide-{cat.replace('_', '-')}-{2024 + j % 3}-{j // 8:02d}"
            docs.append(doc)
            chunk_ids.append(f"{doc}#c{j:03d}")
            n = int(rng.integers(2, 6))
            picks = rng.choice(len(_CHUNK_SENTENCES), size=n, replace=False)
            texts.append(
                f"[{ko} 배출 요령] " + " ".join(_CHUNK_SENTENCES[int(k)].format(cat=ko) for k in picks)
            )
            owner.append(ci)
    return docs, chunk_ids, texts, np.array(owner, dtype=np.int16)
