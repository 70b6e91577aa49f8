"""The OpenAPI 3 document of /api/v1, served at /api/openapi.json. Each feature adds its paths."""
from flask import jsonify

from crm import __version__
from crm.api import bp


def _error(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(schema_ref, description="OK"):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _body(schema_ref):
    return {"required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


AUTH_ERRORS = {"401": _error("缺少或无效的令牌"), "403": _error("角色无权执行")}

PATHS = {
    "/api/v1/login": {
        "post": {
            "summary": "登录，换取令牌", "operationId": "login", "security": [],
            "requestBody": _body("LoginRequest"),
            "responses": {"200": _json("LoginResponse"), "400": _error("请求体不是 JSON 对象"),
                          "401": _error("用户名或密码错误"), "422": _error("字段缺失或类型错误"),
                          "429": _error("错误次数过多，用户名已锁定")},
        },
    },
    "/api/v1/logout": {
        "post": {"summary": "注销当前令牌", "operationId": "logout",
                 "responses": {"200": _json("Ok"), **AUTH_ERRORS}},
    },
    "/api/v1/me": {
        "get": {"summary": "当前用户", "operationId": "me",
                "responses": {"200": _json("User"), **AUTH_ERRORS}},
    },
    "/api/v1/users": {
        "get": {"summary": "系统用户列表（管理员）", "operationId": "listUsers",
                "responses": {"200": _json("UserList"), **AUTH_ERRORS}},
        "post": {"summary": "新增系统用户（管理员）", "operationId": "createUser",
                 "requestBody": _body("UserCreate"),
                 "responses": {"201": _json("User", "已创建"), "400": _error("请求体不是 JSON 对象"),
                               **AUTH_ERRORS, "409": _error("用户名已被使用"),
                               "422": _error("用户名、密码或角色不合规")}},
    },
}

SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"},
                                                "message": {"type": "string"}}}},
    },
    "Ok": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    "LoginRequest": {"type": "object", "required": ["username", "password"],
                     "properties": {"username": {"type": "string", "maxLength": 50},
                                    "password": {"type": "string"}}},
    "LoginResponse": {"type": "object", "required": ["token", "role"],
                      "properties": {"token": {"type": "string"},
                                     "role": {"type": "string", "enum": ["admin", "operator"]},
                                     "username": {"type": "string"}}},
    "User": {"type": "object", "required": ["id", "username", "role"],
             "properties": {"id": {"type": "integer"}, "username": {"type": "string"},
                            "display_name": {"type": "string"},
                            "role": {"type": "string", "enum": ["admin", "operator"]},
                            "active": {"type": "boolean"}}},
    "UserList": {"type": "object", "properties": {"items": {"type": "array",
                                                            "items": {"$ref": "#/components/schemas/User"}}}},
    "UserCreate": {"type": "object", "required": ["username", "password"],
                   "properties": {"username": {"type": "string", "minLength": 2, "maxLength": 50},
                                  "password": {"type": "string", "minLength": 8},
                                  "role": {"type": "string", "enum": ["admin", "operator"]},
                                  "display_name": {"type": "string", "maxLength": 50}}},
}


def document():
    """The whole OpenAPI document as a dict."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "客户关系管理系统 API", "version": __version__,
                 "description": "金额一律为两位小数的人民币元字符串（如 \"100.00\"）；"
                                "错误统一为 {\"error\": {\"code\", \"message\"}}。"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


@bp.route("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this API."""
    return jsonify(document())
