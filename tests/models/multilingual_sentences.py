# ruff: noqa: E501  (sentences, one language per line)
"""Four meanings in thirteen languages: parity and cross-lingual probes for the multilingual tower."""

from __future__ import annotations

SENTENCES: dict[str, list[str]] = {
    "en": ["The cat is sleeping on the sofa.", "I drink coffee every morning.",
           "The rocket launched into space.", "We went to the beach on Sunday."],
    "zh": ["猫在沙发上睡觉。", "我每天早上都喝咖啡。", "火箭发射进入了太空。", "我们星期天去了海滩。"],
    "ja": ["猫がソファで寝ています。", "私は毎朝コーヒーを飲みます。", "ロケットが宇宙へ打ち上げられた。", "日曜日に私たちはビーチへ行きました。"],
    "ko": ["고양이가 소파에서 자고 있어요.", "저는 매일 아침 커피를 마셔요.", "로켓이 우주로 발사되었다.", "우리는 일요일에 해변에 갔다."],
    "ar": ["القطة نائمة على الأريكة.", "أشرب القهوة كل صباح.", "انطلق الصاروخ إلى الفضاء.", "ذهبنا إلى الشاطئ يوم الأحد."],
    "hi": ["बिल्ली सोफे पर सो रही है।", "मैं हर सुबह कॉफी पीता हूँ।", "रॉकेट अंतरिक्ष में प्रक्षेपित हुआ।", "हम रविवार को समुद्र तट पर गए।"],
    "th": ["แมวกำลังนอนอยู่บนโซฟา", "ฉันดื่มกาแฟทุกเช้า", "จรวดถูกปล่อยขึ้นสู่อวกาศ", "เราไปชายหาดเมื่อวันอาทิตย์"],
    "vi": ["Con mèo đang ngủ trên ghế sofa.", "Tôi uống cà phê mỗi sáng.",
           "Tên lửa đã được phóng vào không gian.", "Chúng tôi đã đi biển vào Chủ nhật."],
    "id": ["Kucing itu sedang tidur di sofa.", "Saya minum kopi setiap pagi.",
           "Roket itu meluncur ke luar angkasa.", "Kami pergi ke pantai pada hari Minggu."],
    "ru": ["Кошка спит на диване.", "Я пью кофе каждое утро.", "Ракета стартовала в космос.", "В воскресенье мы ходили на пляж."],
    "es": ["El gato está durmiendo en el sofá.", "Bebo café todas las mañanas.",
           "El cohete fue lanzado al espacio.", "Fuimos a la playa el domingo."],
    "pt": ["O gato está dormindo no sofá.", "Eu bebo café todas as manhãs.",
           "O foguete foi lançado ao espaço.", "Nós fomos à praia no domingo."],
    "tr": ["Kedi kanepede uyuyor.", "Her sabah kahve içerim.", "Roket uzaya fırlatıldı.", "Pazar günü plaja gittik."],
}  # fmt: skip
