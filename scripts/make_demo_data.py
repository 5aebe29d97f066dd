"""Write the demo data set that ships inside bertfit: src/bertfit/demo/tickets.csv.

The file holds 600 synthetic IT support tickets (columns ``text,label``) labelled with the
support tier that should handle them:

* ``tier1``: routine helpdesk / self-service requests (password resets, lockouts, toner,
  how-do-I questions, catalogue software installs, peripheral swaps, ...).
* ``tier2``: technical problems that need a technician (crashes, repeated VPN drops, laptops
  that will not boot, phone mail sync, permissions, drivers, licence errors, ...).
* ``tier3``: escalations to engineering, infrastructure or security (outages, database
  corruption, production API errors, phishing and malware, firewall changes, failed restores,
  identity-provider outages, expired production certificates, ...).

Every ticket is composed from independent building blocks (prefix, opener, one core problem
template with inline alternatives and slots, optional details, urgency and closer), and some
rows are lower-cased or carry a small typo, the way people write. Several core templates in
different tiers deliberately share vocabulary ("can't log in", "email", "VPN", "shared drive",
"slow") and differ only in scope or severity, so the classes are learnable but not separable
by a single keyword. All text was written for this script; the data is synthetic.

The output is deterministic (``random.Random(0)``, stable row order). The CSV is committed;
re-run this script only to regenerate it::

    python3 scripts/make_demo_data.py
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

SEED = 0
TARGETS = {"tier1": 230, "tier2": 210, "tier3": 160}
MIN_WORDS, MAX_WORDS = 5, 60
OUT = Path(__file__).resolve().parent.parent / "src" / "bertfit" / "demo" / "tickets.csv"

# --------------------------------------------------------------------------------------------
# Slot fillers, written as {name} inside templates.
# --------------------------------------------------------------------------------------------
# The word lists below are kept compact on purpose.
# fmt: off
SLOTS: dict[str, list[str]] = {
    "name": [
        "Sarah", "Tom", "Priya", "Marcus", "Elena", "Kenji", "Aisha", "Liam", "Fatima", "Oliver",
        "Chloe", "Diego", "Hannah", "Raj", "Sofia", "Ben", "Mei", "Tariq", "Grace", "Lukas",
    ],
    "user": [
        "jsmith", "a.khan", "mgarcia", "tnguyen", "lpatel", "b.okafor", "cwilliams", "r.iyer",
        "dmueller", "s.larsen", "kowalski.p", "hbrown", "e.rossi", "fmartin", "ychen", "o.adeyemi",
    ],
    "app": [
        "Outlook", "Teams", "Excel", "SAP", "Salesforce", "Zoom", "Slack", "Chrome", "Adobe Acrobat",
        "AutoCAD", "Jira", "Power BI", "SharePoint", "OneDrive", "Word", "QuickBooks", "Citrix",
    ],
    "catalogue_sw": [
        "Visio", "Adobe Reader", "7-Zip", "Notepad++", "Zoom", "Power BI Desktop", "Python",
        "Tableau Reader", "Snagit", "Slack", "Firefox", "Audacity", "draw.io",
    ],
    "licensed_sw": [
        "Visio", "AutoCAD", "Adobe Acrobat Pro", "Project", "MATLAB", "Tableau", "SolidWorks",
        "Photoshop", "SPSS",
    ],
    "laptop": [
        "laptop", "ThinkPad", "MacBook", "Surface", "Dell laptop", "work laptop", "desktop PC",
        "HP EliteBook",
    ],
    "peripheral": [
        "monitor", "keyboard", "mouse", "headset", "webcam", "docking station", "second screen",
    ],
    "printer": [
        "the printer on the 3rd floor", "PRN-204", "the HP by reception", "the Ricoh in the copy room",
        "the label printer in the warehouse", "the printer next to my desk", "PRN-117",
        "the big printer in finance",
    ],
    "location": [
        "Leeds", "Berlin", "Denver", "Pune", "Lyon", "Toronto", "Madrid", "Glasgow", "Austin",
        "Rotterdam",
    ],
    "area": [
        "4th floor", "2nd floor", "ground floor", "3rd floor", "mezzanine", "trading floor",
        "warehouse floor", "finance floor", "sales floor", "call centre floor",
    ],
    "phone": ["iPhone", "Android phone", "Samsung", "Pixel", "work phone", "iPad"],
    "server": [
        "SRV-DB01", "prod-api-02", "fs01", "exch-01", "sql-prod-3", "web-prod-07", "dc02",
        "app-prod-11", "erp-db-02", "k8s-node-5",
    ],
    "system": [
        "the customer portal", "the order API", "the ERP system", "the payroll system",
        "the main website", "the billing service", "the booking platform", "the warehouse system",
        "the partner API",
    ],
    "db": [
        "the orders database", "the payroll DB", "the CRM database", "the inventory database",
        "the finance ledger DB", "the main SQL cluster",
    ],
    "errcode": [
        "0x80070005", "0x800CCC0E", "1603", "0xc000021a", "0x80004005", "E_FAIL", "-2147467259",
        "0x8024402c",
    ],
    "minutes": ["10 minutes", "20 minutes", "half an hour", "an hour", "two hours", "15 min"],
    "when": [
        "this morning", "since yesterday", "since lunch", "since about 9am", "since the weekend",
        "for the last hour", "since the update last night", "today",
    ],
    "started": [
        "this morning", "yesterday", "after lunch", "around 9am", "on Monday", "an hour ago",
        "after the update last night", "when I came in",
    ],
    "num": [str(n) for n in range(1023, 9987, 137)],
    # shared symptom words; the scope slots below decide the tier
    "broken": [
        "isn't working", "stopped working", "is not loading", "keeps timing out", "won't open",
        "is throwing errors", "is acting up", "won't connect", "is really slow", "is down",
        "keeps giving an error", "just shows a blank page",
    ],
    "one_scope": [
        "for me", "on my {laptop}", "only on my machine", "for me but my colleagues are fine",
        "just for my account", "on my PC only", "for me and nobody else", "only when I use my {laptop}",
        "for me, no one else in my team has it", "on my machine, it's not the whole team",
        "for me, nobody else on the {area} has this problem", "but only for me, everyone else can use it",
    ],
    "all_scope": [
        "for everyone", "for the whole {area}", "for the entire {location} office", "for all users",
        "across the company", "for all our customers", "company wide", "for every site",
        "for everybody, not just me", "for the whole {location} site and remote staff too",
        "and no one on my team can use it", "and it's not only me, nobody on the {area} can work",
        "for me and everyone else in the office", "for all of us, not just my machine",
    ],
    # topic families: a shared opening ({login_to}, {print_to}, ...) plus a cue that sets the tier
    "login_to": [
        "[I can't|can't|unable to|cannot] [log in to|sign in to|get into] [{app}|my {laptop}|{system}]",
    ],
    "login_t1": [
        "it says my password expired", "I think I forgot my password", "it says my account is locked",
        "I typed the wrong password too many times", "I need a password reset",
        "I came back from leave and my password doesn't work anymore",
    ],
    "login_t2": [
        "it gives error {errcode} even with the right password",
        "it loops back to the sign-in page on my machine",
        "it worked yesterday, the reset didn't fix it, colleagues are fine",
        "it says the profile can't be loaded", "it says the device is not compliant",
        "it keeps saying 'something went wrong' just on my {laptop}",
    ],
    "login_t3": [
        "nobody on the {area} can either", "the SSO page is down for everyone",
        "the whole company is getting the same error", "it's everyone, the identity provider seems down",
        "all users in {location} get the same error", "none of us can, the login server isn't responding",
    ],
    "print_to": ["[I can't|can't|unable to|cannot] print [to|on] {printer}"],
    "print_t1": [
        "it says out of paper", "it says toner low", "it's flashing a paper jam light",
        "I don't know how to add it to my {laptop}", "it needs new toner",
    ],
    "print_t2": [
        "it shows offline on my {laptop} but others can print",
        "the jobs get stuck in the queue with an error",
        "it prints gibberish since the driver update", "the driver install fails with {errcode}",
    ],
    "print_t3": [
        "and none of the printers in {location} work, the print server is down",
        "no one in the building can print, the print server {server} is unreachable",
    ],
    "mail_to": ["[email|my email|Outlook|mail] [problem|issue|trouble]:"],
    "mail_t1": [
        "my mailbox is full, can I get more space?", "how do I set up an auto reply?",
        "how do I share my inbox with {name}?", "how do I recall a message I sent by mistake?",
        "I need a new shared mailbox for the {area} team",
    ],
    "mail_t2": [
        "Outlook won't sync on my {phone}", "Outlook keeps crashing when I open attachments",
        "my Outlook profile seems corrupted", "emails are stuck in my outbox on my {laptop} only",
        "search in Outlook stopped finding anything on my machine",
    ],
    "mail_t3": [
        "nobody in the company is receiving external email", "the mail server is down for everyone",
        "someone is sending phishing emails from {name}'s account to all staff",
        "all outgoing mail is stuck, the mail queue on {server} is huge",
    ],
    "vpn_to": ["VPN [issue|problem|question]:"],
    "vpn_t1": [
        "how do I install the VPN client on my {laptop}?",
        "where do I find the VPN guide for working from home?",
        "what server address do I put in the VPN client?", "I need VPN access set up as a new starter",
    ],
    "vpn_t2": [
        "it keeps disconnecting every {minutes}", "it connects but I can't reach internal sites",
        "the client crashes when I click connect", "it says certificate invalid only on my {laptop}",
    ],
    "vpn_t3": [
        "the VPN gateway is down and nobody remote can connect", "every remote user got disconnected at once",
        "we need a firewall change so the new VPN range can reach {server}",
    ],
    "drive_to": ["shared drive [issue|problem|request]:"],
    "drive_t1": [
        "how do I map the drive on my {laptop}?", "can I get access to the {area} folder? {name} approved",
        "where is the drive for the {area} team?", "how do I get a deleted file back from yesterday?",
    ],
    "drive_t2": [
        "access denied on a folder I could open last week",
        "I can open files but can't save, permission error",
        "the mapped drive disconnects every time I reboot",
        "{name} moved teams and still can't open the folder",
    ],
    "drive_t3": [
        "the file server is down and nobody can open anything",
        "files across all folders are renamed to .locked",
        "half the folders vanished overnight for everyone, the restore from backup failed",
    ],
}

# --------------------------------------------------------------------------------------------
# Core problem templates. [a|b|c] picks one alternative ([a|] may pick nothing); {slot} fills
# from SLOTS. Templates that share words across tiers are deliberate (see module docstring).
# --------------------------------------------------------------------------------------------
CORE: dict[str, list[str]] = {
    "tier1": [
        # accounts and passwords
        "I [forgot|can't remember] my password and need a reset [please|]",
        "can you reset my password? [it expired|it expired over the weekend|I changed it and forgot it]",
        "I'm locked out of my account after typing the wrong password too many times",
        "my account is locked again [, I think|and] I [mistyped|fat-fingered] my password a few times",
        # mirrored topics: same nouns as tier2/tier3 tickets, routine scope
        "can't log in to {app}, I think I typed my password wrong and now it's locked [. only me|]",
        "can't sign in to {system}, I think I never got an account. how do I request access?",
        "how do I get access to {system}? my manager {name} approved it",
        "can't log in to the VPN from home, I think my password expired while I was away",
        "how do I set up my work email on my {phone}?",
        "the email app on my new {phone} asks for a server name, what do I put in?",
        "I need a {licensed_sw} licence for new starter {name}, it's approved",
        "please assign me a {licensed_sw} licence, my trial ran out and my manager approved the purchase",
        "can I get read access to the {area} shared drive folder? {name} approved it",
        "I got a spam email [about a prize|selling cheap software], do I delete it or forward it somewhere?",
        "how do I block a sender in Outlook? I keep getting newsletters",
        "I need a new charger for my {laptop}, I left mine at the {location} office",
        "my {laptop} battery drains fast, can I get a spare charger for the {area}?",
        "can you check if {printer} is working? it says out of paper but the tray is full of paper",
        "the Wi-Fi password for the {area} changed and I don't have the new one",
        "I need the VPN client on my new {laptop}, it's not installed yet",
        "how do I restore a file I deleted from OneDrive yesterday?",
        "Teams keeps asking me to sign in again after my password change, how do I fix it?",
        "I can't log in to my [PC|{laptop}], it says my account is locked. [Just me, others are fine.|]",
        "can't log in to {app}, I think my password expired [while I was on leave|last week]",
        "new starter {name} needs their password reset, username {user}",
        "password reset please, user {user}",
        "locked out again, please unlock {user}",
        "[printer|{printer}] out of toner again",
        "need the guest Wi-Fi password please",
        "mouse broken, need a new one",
        "password reset request for user {user} [please|], they are locked out",
        "how do I change my password [before it expires|from home]?",
        "I need to set up the authenticator app on my new {phone} for sign-in",
        # printers and peripherals
        "{printer} is out of [toner|paper|black toner|yellow ink]",
        "[can someone|could somebody] refill the paper in {printer}?",
        "{printer} says [low toner|replace toner cartridge|paper tray empty]",
        "my {peripheral} [stopped working|is broken|is flickering] and I'd like a replacement",
        "can I [get|swap] my {peripheral} for a [new|bigger|wireless] one?",
        "I need a second monitor [for my desk|for the new starter] on the {area}",
        # how-to questions
        "how do I share my calendar with {name}?",
        "how [can I|do I] give {name} access to my [calendar|inbox] while I'm on holiday?",
        "how do I set up an out of office reply in Outlook?",
        "[what is|can I get] the Wi-Fi password for [guests|the guest network|visitors] at {location}?",
        "how do I connect my {laptop} to the [office|guest] Wi-Fi?",
        "how do I install the VPN client [on my home PC|on my {laptop}] to work from home?",
        "where do I find the VPN [setup guide|instructions] for working remotely?",
        "how do I map the shared drive on my {laptop}?",
        "how do I add a signature to my emails in Outlook?",
        "how do I book a meeting room in Teams?",
        "how do I report a spam email? [I keep getting junk mail|I got a weird newsletter]",
        "how do I export a report to PDF in {app}?",
        # mailbox and software catalogue
        "my mailbox is full and I can't send emails, can I get more space?",
        "Outlook says my mailbox is [almost full|over its size limit]. how do I archive old mail?",
        "please install {catalogue_sw} on my {laptop}, it's in the software catalogue",
        "[can I get|requesting] {catalogue_sw} installed? [my manager approved it|I need it for a project]",
        "I need {catalogue_sw} on my machine, I couldn't find it in the self-service portal",
        "can you add me to the {area} distribution list?",
        "I need access to the shared calendar for the {area} team",
        "my Teams status is stuck on away, how do I change it?",
    ],
    "tier2": [
        # crashes and application faults
        "{app} keeps crashing [every time I open it|when I open attachments|after a while] on my {laptop}",
        "{app} freezes and then closes [with no error|without saving my work] {when}",
        "{app} won't start [on my machine|for me], it shows error {errcode}",
        "{app} keeps crashing, please help",
        "{laptop} won't boot after the update",
        "VPN keeps dropping, very annoying",
        "no sound on my {laptop} since the update",
        "Outlook crashes on startup, [I think my profile is corrupted|safe mode doesn't help]",
        "my Outlook profile seems corrupted, it keeps asking for my password and never connects",
        "Outlook is stuck on 'loading profile' {when} [on my {laptop}|]",
        "Excel crashes when I open [large spreadsheets|the monthly report|files from SharePoint]",
        # VPN and network on one machine / one office
        "VPN keeps disconnecting [every {minutes}|every few minutes] [when I work from home|from home]",
        "my VPN connects and then drops after {minutes}, I have to reconnect all day",
        "VPN connects but I can't reach any internal sites from my {laptop}",
        "the network in the {location} office is really slow {when}, [just our office|other sites seem fine]",
        "internet is very slow on the {area} in {location}, pages take ages to load",
        "my {laptop} keeps dropping off the Wi-Fi [on the {area}|in meeting rooms]",
        "my {laptop} has no network when docked, the ethernet [shows unplugged|doesn't work]",
        # hardware and boot
        "my {laptop} won't boot, it's stuck on [the logo|a black screen|a blue screen with {errcode}]",
        "[I get a|keep getting a] blue screen on my {laptop} [a few times a day|{when}]",
        "my {laptop} [won't turn on|won't power on] even when plugged in",
        "my {laptop} is extremely slow and the fan is always loud, [takes {minutes} to start|nothing helps]",
        "my {laptop} can't see my {peripheral} anymore, I think it's a driver problem",
        "{printer} [prints garbage|shows offline] from my {laptop}, I think the driver is wrong",
        "the [audio|graphics|touchpad] driver on my {laptop} stopped working after the update",
        "the docking station doesn't detect my monitors after the driver update",
        # email sync, permissions, licences
        "my email isn't syncing on my {phone} {when}",
        "[mail|my calendar] on my {phone} stopped syncing, it says cannot verify account",
        "I get access denied on the [finance|HR|projects] folder on the shared drive, I had access last week",
        "I can see the shared drive folder but can't save files, it says I don't have permission",
        "{name} moved teams and still can't open the [sales|legal|{area}] shared drive folder",
        "{licensed_sw} says my licence [has expired|is invalid|couldn't be verified]",
        "{licensed_sw} opens in read-only mode saying [unlicensed product|no licence available]",
        "I get a licence error [code {errcode}|] when I start {licensed_sw}",
        "{app} install from the software centre fails with error {errcode}",
        "Teams calls keep dropping [after a minute|and my camera isn't detected]",
        "I can't log in to my {laptop}, it says the trust relationship with the domain failed",
        "can't log in to {app} even after my password was reset, [just me|others are fine]",
        "the certificate warning pops up on my {laptop} every time I connect to the office Wi-Fi",
        "[I'm getting|getting] a certificate error in Chrome on my {laptop} only for internal sites",
        "my OneDrive won't sync, it says [files are locked|sync pending] {when}",
        # mirrored topics: same nouns as tier1/tier3 tickets, but one user or one office
        "I can't connect to {server} from my {laptop}, my colleagues can",
        "{system} is very slow for me only, other people in my team are fine",
        "{system} gives me an error {errcode} when I log in, others can use it",
        "{catalogue_sw} from the software catalogue fails to install on my {laptop} with error {errcode}",
        "I installed {catalogue_sw} from the self-service portal and now it won't open",
        "the VPN client on my {laptop} won't install, it fails with {errcode}",
        "{printer} prints every page with black streaks even after a new toner",
        "my Wi-Fi connects but there is no internet on my {laptop} only, my {phone} works fine",
        "antivirus on my {laptop} says definitions are out of date and won't update",
        "the MFA push never arrives on my {phone}, I can't approve sign-ins, colleagues get theirs",
        "emails I send to one customer keep bouncing back with a 5.7.1 error, other emails are fine",
        "my shared mailbox disappeared from Outlook after the update",
        "my {laptop} shows a certificate error when I open {system}, colleagues can open it fine",
    ],
    "tier3": [
        # outages and infrastructure
        "{server} is down and {system} is [unavailable|not responding] for everyone",
        "[outage|major outage]: {system} is returning 500 errors to all customers",
        "{system} down for everyone!!",
        "prod API returning 500s, urgent",
        "possible phishing, I clicked the link",
        "{server} not responding, production impacted",
        "the production API is throwing HTTP 500 [on every request|on most requests] {when}",
        "{system} is down, customers [can't place orders|can't log in|get a 503 page]",
        "{db} looks corrupted, queries fail with [checksum errors|page errors|consistency errors]",
        "[we think|it looks like] {db} is corrupted after the failover, data is missing",
        "disk full on {server}, {db} has stopped accepting writes",
        "the whole {location} office is offline, it looks like the core switch [died|failed]",
        "data centre network switch failure, [several racks|half the servers] unreachable",
        "nobody at {location} can reach any servers, the network link to the data centre is down",
        "the main file server {server} is down, nobody can open the shared drive",
        "[Exchange|the mail server] is down, nobody in the company can send or receive email",
        "the entire company VPN is down, [nobody|none of the remote staff] can connect",
        # identity and SSO
        "nobody can log in, the SSO page [just spins|shows an error] for everyone",
        "single sign-on is down, [the whole company|everyone on the {area}] can't log in to anything",
        "everyone on the {area} can't log in {when}, [looks like|I think] the identity provider is down",
        "can't log in and neither can anyone else in {location}, Okta [shows an error|times out]",
        # security
        "I clicked a link in a phishing email and entered my password, [what do I do|please help]",
        "suspicious email posing as the CEO asking for gift cards, several people [replied|clicked]",
        "antivirus [found|flagged] [ransomware|a trojan|malware] on {server}",
        "my files are being renamed [with a strange extension|to .locked] and there's a ransom note",
        "we see lots of failed logins for admin accounts from [abroad|an unknown IP], possible breach",
        "I think my account was compromised, there are logins from [another country|an IP I don't know]",
        "someone has been [forwarding|exporting] the CEO's mailbox to an outside address",
        # changes and other escalations
        "need a firewall rule change to open port [443|8443|5432] from {server} to the partner network",
        "please open the firewall for [the new payment provider|our supplier's SFTP server]",
        "the backup restore of {db} failed [twice|again], we need that data [back|today]",
        "last night's backups failed on all servers [and the restore test did too|]",
        "the SSL certificate on {system} expired, customers are getting security warnings",
        "production certificate on [api.|www.|portal.]ourcompany.com [expires tomorrow|has expired]",
        "the database server {server} keeps crashing and {system} goes down [with it|each time]",
        "{system} is really slow for all users, the database CPU is at 100%",
        "all printers and file shares at {location} stopped at once, the domain controller looks dead",
        # mirrored topics: same nouns as tier1/tier2 tickets, but everyone / production / security
        "can't log in to {app}, and nobody in the office can, the login page errors for everyone",
        "the licence server is down, nobody can open {licensed_sw} [this morning|{when}]",
        "email to all external customers is bouncing back {when}, the whole company is affected",
        "MFA push notifications stopped arriving for every user, nobody can sign in",
        "the Wi-Fi controller is down, no access points working anywhere in the {location} office",
        "the VPN certificate expired and every remote user is getting a certificate error",
        "antivirus found a trojan on my {laptop} and it's been talking to an unknown server",
        "I opened an attachment from a spam email and now my {laptop} is acting strange, files are vanishing",
        "{app} is down for the whole organisation, nobody can [open|use] it {when}",
        "the shared drive lost half its folders overnight for all departments, we need a restore from backup",
        "{server} is unreachable and every printer in {location} has stopped too",
        "{system} is slow for every customer and timing out, the load balancer shows errors",
        "urgent firewall change needed, {system} can't reach the payment gateway since last night's change",
    ],
}

# Topic families: the same opening in every tier, the tier set by the cue or scope that follows.
# Drawn more often than a single CORE template (FAMILY_P) so shared vocabulary is common.
FAMILY: dict[str, list[str]] = {
    "tier1": [
        "{login_to}, {login_t1}",
        "{print_to}, {print_t1}",
        "{mail_to} {mail_t1}",
        "{vpn_to} {vpn_t1}",
        "{drive_to} {drive_t1}",
    ],
    "tier2": [
        "{app} {broken} {one_scope}",
        "{login_to}, {login_t2}",
        "{print_to}, {print_t2}",
        "{mail_to} {mail_t2}",
        "{vpn_to} {vpn_t2}",
        "{drive_to} {drive_t2}",
        "{app} {broken} {one_scope} {when}",
        "{system} {broken} {one_scope}",
        "[hi|hey], {app} {broken} {one_scope}. can someone have a look?",
    ],
    "tier3": [
        "{app} {broken} {all_scope}",
        "{login_to}, {login_t3}",
        "{print_to} {print_t3}",
        "{mail_to} {mail_t3}",
        "{vpn_to} {vpn_t3}",
        "{drive_to} {drive_t3}",
        "{app} {broken} {all_scope} {when}",
        "{system} {broken} {all_scope}",
        "[hi|hey], {system} {broken} {all_scope}. can someone have a look?",
    ],
}
FAMILY_P = 0.4

# Details. SHARED applies to every tier; the per-tier ones must stay true to that tier.
SHARED_DETAILS = [
    "I already restarted.",
    "I tried turning it off and on again.",
    "Screenshot attached.",
    "My username is {user}.",
    "[I'm at the {location} office|Location: {area}, {location}|I'm working from home today].",
    "This started {started}.",
    "Not sure who to ask about this.",
    "Happy to jump on a call.",
    "My extension is {num}.",
    "Logged in as {user}.",
]
DETAILS: dict[str, list[str]] = {
    "tier1": [
        "No rush.",
        "Whenever you get a chance.",
        "I'm new here so not sure how this works.",
        "Sorry if this is a silly question.",
        "My manager {name} said to raise a ticket.",
        "It's only me.",
        "I need it by the end of the week.",
    ],
    "tier2": [
        "I reinstalled it but it didn't help.",
        "It only happens on my machine.",
        "Others in my team are fine.",
        "Error code {errcode}.",
        "I can't really work like this.",
        "It worked fine last week.",
        "The helpdesk already tried the usual fixes.",
    ],
    "tier3": [
        "This affects a lot of people.",
        "Please escalate to the on-call engineer.",
        "This looks serious.",
        "Please treat this as a priority one.",
        "Happy to join a call with the engineers.",
        "Not sure if anyone has raised this yet.",
    ],
}
# Longer, tier-neutral background that some people add.
CONTEXT = [
    "I have a client presentation at 3pm and really need this sorted before then.",
    "I've only been with the company two weeks so I'm still figuring out how everything works here.",
    "We had something similar last month and someone from IT fixed it but I don't remember who it was.",
    "I searched the intranet and the FAQ but couldn't find anything that matched what I'm seeing.",
    "My manager {name} asked me to log this properly instead of just messaging people on Teams.",
    "I'm travelling between the {location} office and head office this week so I might be slow to reply.",
    "Please call me on extension {num} or message me on Teams if you need more details.",
]
URGENCY = [
    "URGENT!",
    "urgent please.",
    "ASAP please!",
    "High priority.",
    "Please help asap.",
    "This is blocking me.",
    "need this today.",
    "!!!",
]
# Chance of an urgency phrase per tier: everyone shouts sometimes, tier3 more often.
URGENCY_P = {"tier1": 0.15, "tier2": 0.2, "tier3": 0.35}
OPENERS = [
    "Hi,", "Hello,", "Hi team,", "Hello IT,", "Hi IT team,", "Good morning,", "Good afternoon,",
    "hey", "Hi there,", "Dear helpdesk,", "Morning all,", "Hi {name},", "Hey team,", "Hiya,",
]
CLOSERS = [
    "Thanks", "Thank you!", "Thanks in advance.", "Cheers", "thx", "Regards, {name}",
    "Kind regards, {name}", "Many thanks, {name}", "ty", "Thanks, {user}", "Best, {name}",
]
PREFIXES = [
    "[Ticket #{num}]", "INC{num}:", "RE:", "Fwd:", "Subject:", "Request:", "Issue:", "Helpdesk -",
    "#{num}",
]
# fmt: on

_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")


def _resolve_alternatives(text: str, rng: random.Random) -> str:
    while True:
        match = _ALT.search(text)
        if match is None:
            return text
        choice = rng.choice(match.group(1).split("|"))
        text = text[: match.start()] + choice + text[match.end() :]


def fill(template: str, rng: random.Random) -> str:
    """Resolve [a|b] alternatives and {slot} fillers (recursively); tidy spaces before punctuation."""
    text = _resolve_alternatives(template, rng)
    while _SLOT.search(text):  # fillers may hold slots and alternatives of their own
        text = _SLOT.sub(lambda m: rng.choice(SLOTS[m.group(1)]), text, count=1)
        text = _resolve_alternatives(text, rng)
    return re.sub(r" +([,.?!])", r"\1", re.sub(r"\s+", " ", text)).strip()


def typo(text: str, rng: random.Random) -> str:
    """Corrupt one longer word: swap two letters, drop one or double one."""
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
    if not candidates:
        return text
    i = rng.choice(candidates)
    w = words[i]
    j = rng.randrange(1, len(w) - 2)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif kind == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def sentence(text: str) -> str:
    """Capitalise and end a core problem so it reads as a sentence."""
    text = text.strip()
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."


def ticket(label: str, rng: random.Random) -> str:
    templates = FAMILY[label] if rng.random() < FAMILY_P else CORE[label]
    core = fill(rng.choice(templates), rng)
    style = rng.random()
    if style < 0.2:
        # terse: just the problem, maybe a prefix
        parts = [core]
    else:
        parts = []
        if rng.random() < 0.6:
            parts.append(fill(rng.choice(OPENERS), rng))
        parts.append(sentence(core))
        used: set[str] = set()
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            pool = SHARED_DETAILS if rng.random() < 0.65 else DETAILS[label]
            detail = rng.choice(pool)
            if detail not in used:
                used.add(detail)
                parts.append(fill(detail, rng))
        if rng.random() < 0.15:
            parts.extend(fill(c, rng) for c in rng.sample(CONTEXT, rng.choice([1, 1, 2])))
        if rng.random() < URGENCY_P[label]:
            parts.insert(rng.choice([1, len(parts)]), rng.choice(URGENCY))
        if rng.random() < 0.55:
            parts.append(fill(rng.choice(CLOSERS), rng))
    text = " ".join(parts)
    if rng.random() < 0.2:
        text = fill(rng.choice(PREFIXES), rng) + " " + text
    if rng.random() < 0.12:
        text = text.lower()
    if rng.random() < 0.05:
        text = typo(text, rng)
    return text


def generate(rng: random.Random) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for label, target in TARGETS.items():
        count = 0
        attempts = 0
        while count < target:
            attempts += 1
            if attempts > target * 200:
                raise RuntimeError(f"could not make {target} distinct {label} tickets")
            text = ticket(label, rng)
            n_words = len(text.split())
            if text in seen or not MIN_WORDS <= n_words <= MAX_WORDS:
                continue
            seen.add(text)
            rows.append((text, label))
            count += 1
    rng.shuffle(rows)
    return rows


def main() -> None:
    rows = generate(random.Random(SEED))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
