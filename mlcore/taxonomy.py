"""The synthetic world's concept taxonomy: concept ids in the extractor's buckets, with aliases."""
from __future__ import annotations

import functools

import pandas as pd

BUCKETS = ("intent", "occasion", "preferences", "constraints", "lifestyle", "next_action", "other")
LANGUAGES = ("en", "fr", "it", "de", "es", "ja", "zh")

_CATEGORIES = ("leather_goods", "handbags", "small_leather_goods", "watches", "fine_jewelry", "high_jewelry",
               "ready_to_wear", "shoes", "fragrance", "eyewear", "silk_scarves", "home_decor")
_OCCASIONS = ("anniversary", "birthday", "wedding", "graduation", "christmas", "lunar_new_year", "valentines",
              "mothers_day", "fathers_day", "promotion", "retirement", "baby_birth", "housewarming", "engagement")
_ATTRIBUTES = ("black", "gold_tone", "pastel", "neutral_tones", "bold_colors", "exotic_leather", "calfskin",
               "cashmere", "platinum", "diamonds", "pearls", "vintage_style", "minimalist_style", "logo_discreet",
               "limited_edition")
_CONSTRAINTS = ("budget_ceiling", "price_sensitive", "size_unavailable", "waitlist_frustration", "shipping_delay",
                "prefers_online", "moving_abroad", "complaint_service", "complaint_quality", "return_request",
                "repair_delay", "allergy_metal", "vegan_materials", "time_constrained", "competitor_offer",
                "duty_free_only", "privacy_concerns", "declined_invitation", "payment_issue", "gift_budget_cap")
_LIFESTYLE = ("golf", "sailing", "yachting", "art_collector", "wine_collector", "equestrian", "skiing", "tennis",
              "opera", "contemporary_art", "classic_cars", "private_aviation", "philanthropy", "fine_dining",
              "wellness", "yoga", "travel_asia", "travel_europe", "travel_americas", "second_home", "family_office",
              "startup_founder", "executive", "medical_professional", "lawyer", "architect", "fashion_industry",
              "influencer", "collector_watches", "collector_jewelry", "gardening", "photography", "hunting",
              "diving", "polo", "tea_ceremony", "design_enthusiast", "music_patron", "theatre", "literature")
_NEXT_ACTIONS = ("call_back", "send_lookbook", "invite_private_event", "private_viewing", "schedule_fitting",
                 "follow_up_repair", "reserve_item", "send_gift_ideas", "book_appointment", "whatsapp_follow_up",
                 "send_catalogue", "invite_fashion_show", "arrange_home_delivery", "personal_shopping",
                 "thank_you_note", "birthday_greeting", "introduce_artisan", "update_preferences", "check_stock",
                 "request_sketch")
_OTHER = ("family_news", "new_baby", "pet_owner", "health_issue", "new_job", "moved_house", "married", "divorce",
          "kids_school", "travel_plans", "referred_friend", "social_media_mention", "press_mention",
          "loyalty_program", "store_visit", "online_visit", "event_attended", "feedback_positive",
          "feedback_negative", "no_show")

# A few words per language: enough for aliases to look like what an extractor matched in each language.
_WORDS = {
    "fr": {"gift": "cadeau", "birthday": "anniversaire", "wedding": "mariage", "watches": "montres",
           "shoes": "chaussures", "black": "noir", "purchase": "achat", "intent": "envie", "reserve": "réserver",
           "call": "appeler", "back": "rappel", "leather": "cuir", "goods": "maroquinerie", "fine": "haute",
           "jewelry": "joaillerie", "christmas": "noël", "travel": "voyage", "art": "art", "wine": "vin"},
    "it": {"gift": "regalo", "birthday": "compleanno", "wedding": "matrimonio", "watches": "orologi",
           "shoes": "scarpe", "black": "nero", "purchase": "acquisto", "leather": "pelle", "jewelry": "gioielli",
           "christmas": "natale", "travel": "viaggio", "wine": "vino", "call": "chiamare"},
    "de": {"gift": "geschenk", "birthday": "geburtstag", "wedding": "hochzeit", "watches": "uhren",
           "shoes": "schuhe", "black": "schwarz", "purchase": "kauf", "leather": "leder", "jewelry": "schmuck",
           "christmas": "weihnachten", "travel": "reise", "wine": "wein"},
    "es": {"gift": "regalo", "birthday": "cumpleaños", "wedding": "boda", "watches": "relojes",
           "shoes": "zapatos", "black": "negro", "purchase": "compra", "leather": "cuero", "jewelry": "joyería",
           "christmas": "navidad", "travel": "viaje", "wine": "vino"},
    "ja": {"gift": "ギフト", "birthday": "誕生日", "wedding": "結婚式", "watches": "時計", "shoes": "靴",
           "black": "黒", "purchase": "購入", "leather": "レザー", "jewelry": "ジュエリー", "travel": "旅行"},
    "zh": {"gift": "礼物", "birthday": "生日", "wedding": "婚礼", "watches": "腕表", "shoes": "鞋",
           "black": "黑色", "purchase": "购买", "leather": "皮革", "jewelry": "珠宝", "travel": "旅行",
           "lunar": "农历", "new": "新", "year": "年"},
}


def _alias(concept_id: str, language: str) -> str:
    words = concept_id.split("_")
    table = _WORDS.get(language, {})
    sep = "" if language in ("ja", "zh") else " "
    return sep.join(table.get(w, w) for w in words)


@functools.lru_cache(maxsize=1)
def taxonomy() -> pd.DataFrame:
    """All concepts: ``concept_id``, ``bucket`` and one alias column per language (deterministic)."""
    rows = []
    rows += [(f"{verb}_{cat}", "intent") for verb in ("purchase_intent", "reserve", "upgrade") for cat in _CATEGORIES]
    rows += [(f"browse_{cat}", "intent") for cat in _CATEGORIES[:4]]
    rows += [(f"gift_{occ}", "occasion") for occ in _OCCASIONS]
    rows += [(f"celebration_{occ}", "occasion") for occ in _OCCASIONS]
    rows += [(f"{occ}", "occasion") for occ in ("fashion_week", "art_fair", "gala_event", "travel_season")]
    rows += [(f"pref_{cat}_{attr}", "preferences") for cat in _CATEGORIES[:8] for attr in _ATTRIBUTES]
    rows += [(c, "constraints") for c in _CONSTRAINTS]
    rows += [(c, "lifestyle") for c in _LIFESTYLE]
    rows += [(c, "next_action") for c in _NEXT_ACTIONS]
    rows += [(c, "other") for c in _OTHER]
    frame = pd.DataFrame(rows, columns=["concept_id", "bucket"])
    for lang in LANGUAGES:
        frame[f"alias_{lang}"] = [_alias(c, lang) for c in frame["concept_id"]]
    return frame
