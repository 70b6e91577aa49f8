"""Plausible shop data for demos, benchmarks and load tests: Chinese names, valid phones."""
import random

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严")
GIVEN = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红娥玲芬燕彬鹏辉建国建华"
         "志强晓东晓红婷婷欣怡子涵浩然宇轩梓萱一诺思远佳怡雨桐俊杰嘉怡文博")
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
                   "152", "155", "156", "157", "158", "159", "166", "176", "177", "178", "180",
                   "181", "182", "183", "185", "186", "187", "188", "189", "191", "198", "199")
DISTRICTS = ("朝阳区建国路", "海淀区中关村大街", "浦东新区世纪大道", "天河区体育西路", "南山区科技园",
             "西湖区文三路", "武侯区人民南路", "江汉区解放大道", "鼓楼区中山路", "雁塔区小寨东路")


def names(rng):
    """An endless stream of Chinese full names."""
    while True:
        given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
        yield rng.choice(SURNAMES) + given


def fake_customers(count, seed=42, start=0):
    """`count` customer dicts with unique mobile numbers (deterministic for a seed)."""
    rng = random.Random(seed)
    name_stream = names(rng)
    # Unique, scattered phones: i → i·7919 mod 10^8 is one-to-one (7919 is prime to 10^8).
    for i in range(start, start + count):
        prefix = MOBILE_PREFIXES[i % len(MOBILE_PREFIXES)]
        number = i * 7919 % 100_000_000
        yield {
            "name": next(name_stream),
            "gender": rng.choice(("男", "女", "女", "未知")),
            "phone": f"{prefix}{number:08d}",
            "address": f"{rng.choice(DISTRICTS)}{rng.randint(1, 999)}号",
            "remark": rng.choice(("", "", "", "喜欢靠窗座位", "对花生过敏", "老客户介绍")),
        }
