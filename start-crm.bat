@echo off
rem Double-click to start the shop CRM. Keep this window open while the shop works.
cd /d "%~dp0"
python crm.py %*
if errorlevel 1 pause
