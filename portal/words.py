"""Every word the holder's page says, in English and Russian (``[issuer] locale`` decides the default,
the browser's Accept-Language and the page's language switch the holder's choice)."""

from __future__ import annotations

__all__ = ["WORDS", "LANGUAGES", "pick_language"]

LANGUAGES = ("en", "ru")

_EN = {
    "title": "My card", "login": "Log in", "login_intro": "Enter your card number or your phone number. "
    "We send you a one-time code: there is no password to remember.",
    "identifier": "Card number or phone", "send_code": "Send me a code",
    "code_sent": "If this card or phone is one of ours, a code is on its way to the e-mail or phone we have "
    "for it. It is good for {minutes} minutes, once.",
    "code": "Code", "log_in_with_code": "Log in", "start_again": "Ask for a new code",
    "bad_identifier": "Enter a card number (the digits on the card) or a phone number.",
    "wrong_code": "That code is not right, or no longer valid. Check it, or ask for a new one.",
    "locked": "Too many wrong codes. Try again in {minutes} minutes.",
    "throttled": "Too many codes asked for. Try again in {minutes} minutes.",
    "csrf": "This form has expired. Open the page again and retry.",
    "not_found": "Not found.", "too_large": "That is more than this page takes.",
    "bad_request": "That request could not be read.",
    "method": "That is not how this page is used.", "server_error": "Something went wrong on our side. "
    "Nothing was changed. Please try again later.",
    "logout": "Log out", "logged_out": "You are logged out.",
    "my_cards": "My cards", "no_cards": "There are no cards for you yet.",
    "as_of": "As of the last processed transactions, {when}", "as_of_none": "No transactions processed yet",
    "balance": "Balance", "balance_unknown": "not known yet", "points": "Points", "tier": "Tier",
    "discount": "discount {percent}", "prize": "Prize at {threshold} points: {text}",
    "to_prize": "{points} points to go", "prize_reached": "prize reached",
    "lapse": "{points} points lapse on {day} unless you buy something before",
    "state_issued": "Active", "state_blocked": "Blocked", "state_replaced": "Replaced", "state_returned": "Returned",
    "replaced_by": "Replaced by the card ending {last4}",
    "details": "Details", "statement": "Statement", "prizes": "Prizes won", "no_prizes": "No prizes yet.",
    "from": "From", "to": "To", "kinds": "Kinds", "all_kinds": "All", "show": "Show", "csv": "Download CSV",
    "pdf": "Download PDF", "no_lines": "Nothing in this period.", "bad_date": "Dates are written YYYY-MM-DD.",
    "bad_kind": "Unknown kind of transaction.", "cut": "Only the newest {n} lines are shown.",
    "col_time": "Time", "col_kind": "What", "col_where": "Where", "col_amount": "Amount",
    "col_balance": "Balance after", "col_points": "Points after",
    "kind_purchase": "Purchase", "kind_cancel": "Cancellation", "kind_load": "Money loaded", "kind_block": "Blocked",
    "kind_cash_out": "Paid out",
    "lost": "Report lost or stolen", "lost_intro": "The card is blocked at once: no till accepts it once its "
    "hotlist is updated. A new card is made for you, and the value below moves to it.",
    "lost_value": "Moves to the new card: {balance} and {points} points, as of {when}. Anything spent with the "
    "card after that is not known yet and may be gone.",
    "why_lost": "Lost", "why_stolen": "Stolen", "confirm_lost": "Block this card",
    "lost_done": "The card is blocked and a replacement is requested. Staff will tell you when it is ready.",
    "replacement_requested": "Replacement requested on {day}",
    "payout": "Return the card for a payout", "payout_intro": "Bring the card to the desk: it pays out its "
    "balance, and the deposit is refunded.", "payout_amount": "About {total}: balance {balance} as of the last "
    "processed transactions, deposit {deposit}.", "confirm_payout": "Ask for the payout",
    "payout_done": "Noted. Bring the card to the desk; the staff there see your request.",
    "payout_requested": "Payout at return requested on {day}",
    "wallet": "Add to Apple Wallet", "google_wallet": "Save to Google Wallet",
    "consent": "Messages", "consent_intro": "What we may send you about your cards.",
    "consent_email": "E-mail", "consent_sms": "SMS", "save": "Save", "saved": "Saved.",
    "no_address": "(no address on file)", "back": "Back", "language": "Язык: русский",
    "insecure": "This page is open over plain HTTP, so your browser will not keep the login. Open it with https://, "
    "or as http://localhost on this computer.",
    "code_subject": "Your login code", "code_text": "Your code for {issuer}: {code}. It is good for {minutes} "
    "minutes. Nobody from {issuer} will ever ask you for it.",
}
_RU = {
    "title": "Моя карта", "login": "Вход", "login_intro": "Введите номер карты или телефона. Мы пришлём "
    "одноразовый код: пароль помнить не нужно.",
    "identifier": "Номер карты или телефона", "send_code": "Прислать код",
    "code_sent": "Если эта карта или телефон наши, код уже отправлен на почту или телефон, которые у нас есть. "
    "Он действует {minutes} минут, один раз.",
    "code": "Код", "log_in_with_code": "Войти", "start_again": "Запросить новый код",
    "bad_identifier": "Введите номер карты (цифры на карте) или номер телефона.",
    "wrong_code": "Код неверный или уже недействителен. Проверьте его или запросите новый.",
    "locked": "Слишком много неверных кодов. Попробуйте через {minutes} мин.",
    "throttled": "Слишком много запросов кода. Попробуйте через {minutes} мин.",
    "csrf": "Форма устарела. Откройте страницу снова и повторите.",
    "not_found": "Не найдено.", "too_large": "Слишком много данных для этой страницы.",
    "bad_request": "Запрос не удалось прочитать.",
    "method": "Эта страница так не работает.", "server_error": "У нас что-то пошло не так. Ничего не изменено. "
    "Попробуйте позже.",
    "logout": "Выйти", "logged_out": "Вы вышли.",
    "my_cards": "Мои карты", "no_cards": "Карт пока нет.",
    "as_of": "По последним обработанным операциям, {when}", "as_of_none": "Операции ещё не обработаны",
    "balance": "Баланс", "balance_unknown": "пока неизвестен", "points": "Баллы", "tier": "Уровень",
    "discount": "скидка {percent}", "prize": "Приз за {threshold} баллов: {text}",
    "to_prize": "осталось {points} баллов", "prize_reached": "приз получен",
    "lapse": "{points} баллов сгорят {day}, если до этого не будет покупок",
    "state_issued": "Активна", "state_blocked": "Заблокирована", "state_replaced": "Заменена",
    "state_returned": "Возвращена", "replaced_by": "Заменена картой, оканчивающейся на {last4}",
    "details": "Подробнее", "statement": "Выписка", "prizes": "Полученные призы", "no_prizes": "Призов пока нет.",
    "from": "С", "to": "По", "kinds": "Операции", "all_kinds": "Все", "show": "Показать", "csv": "Скачать CSV",
    "pdf": "Скачать PDF", "no_lines": "За этот период ничего нет.", "bad_date": "Даты пишутся ГГГГ-ММ-ДД.",
    "bad_kind": "Неизвестный вид операции.", "cut": "Показаны только последние {n} строк.",
    "col_time": "Время", "col_kind": "Операция", "col_where": "Где", "col_amount": "Сумма",
    "col_balance": "Баланс после", "col_points": "Баллы после",
    "kind_purchase": "Покупка", "kind_cancel": "Отмена", "kind_load": "Пополнение", "kind_block": "Блокировка",
    "kind_cash_out": "Выплата",
    "lost": "Сообщить о потере или краже", "lost_intro": "Карта блокируется сразу: касса не примет её, как только "
    "обновит стоп-лист. Для вас сделают новую карту, и на неё перейдёт сумма ниже.",
    "lost_value": "Перейдёт на новую карту: {balance} и {points} баллов, по состоянию на {when}. Потраченное "
    "картой после этого ещё неизвестно и может быть потеряно.",
    "why_lost": "Потеряна", "why_stolen": "Украдена", "confirm_lost": "Заблокировать карту",
    "lost_done": "Карта заблокирована, замена заказана. Мы сообщим, когда новая карта будет готова.",
    "replacement_requested": "Замена заказана {day}",
    "payout": "Вернуть карту с выплатой", "payout_intro": "Принесите карту в пункт выдачи: она выплатит свой "
    "баланс, и залог вернут.", "payout_amount": "Около {total}: баланс {balance} по последним обработанным "
    "операциям, залог {deposit}.", "confirm_payout": "Запросить выплату",
    "payout_done": "Принято. Принесите карту в пункт выдачи: там видят ваш запрос.",
    "payout_requested": "Выплата при возврате запрошена {day}",
    "wallet": "Добавить в Apple Wallet", "google_wallet": "Сохранить в Google Wallet",
    "consent": "Сообщения", "consent_intro": "Что мы можем присылать вам о ваших картах.",
    "consent_email": "Письма", "consent_sms": "SMS", "save": "Сохранить", "saved": "Сохранено.",
    "no_address": "(адреса нет)", "back": "Назад", "language": "Language: English",
    "insecure": "Страница открыта по HTTP без шифрования, и браузер не сохранит вход. Откройте её через https:// "
    "или как http://localhost на этом компьютере.",
    "code_subject": "Код для входа", "code_text": "Ваш код для входа в {issuer}: {code}. Он действует {minutes} "
    "минут. Сотрудники {issuer} никогда его не спрашивают.",
}
WORDS = {"en": _EN, "ru": _RU}
assert _EN.keys() == _RU.keys(), sorted(_EN.keys() ^ _RU.keys())


def pick_language(accept_language: str, default: str) -> str:
    """The first of ``LANGUAGES`` the browser asks for (RFC 9110 Accept-Language, by weight), else ``default``."""
    from babel import Locale, negotiate_locale

    wanted = []
    for part in accept_language.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        if tag:
            wanted.append((weight, tag.replace("-", "_")))
    chosen = negotiate_locale([t for _, t in sorted(wanted, key=lambda w: -w[0])], list(LANGUAGES))
    if chosen is None:
        return default if default in LANGUAGES else "en"
    return str(Locale.parse(chosen).language)
