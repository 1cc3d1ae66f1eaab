"""Held-out questions: written on 2026-12-04 after all-mpnet-base-v2's lead vote was chosen on the dev splits, to
check on questions nobody had seen the one question it cost the pydoc test split. Asked once for that choice
(README, Knowledge bases); bench_kb.py reports them as the ``holdout`` split of pydoc and man. Never tune on them:
a setting chosen here is no longer measured by them.
"""

from __future__ import annotations

from kb_eval.questions import Question

PYDOC: list[Question] = [
    ("keep only the most recent 100 log lines in memory without the list growing forever", ["collections"]),
    ("find where a new item should be inserted into an already sorted list so it stays sorted", ["bisect"]),
    ("get the three largest numbers from a big list without sorting all of it", ["heapq"]),
    ("make a temporary folder that is removed automatically when I'm done with it", ["tempfile"]),
    ("check whether an IP address belongs to a given subnet", ["ipaddress"]),
    ("measure how long a small snippet of code takes to run, repeated many times", ["timeit"]),
    ("find which lines of my program allocated the most memory", ["tracemalloc"]),
    ("remember the results of an expensive function so a second call with the same arguments is instant",
     ["functools"]),
    ("generate a random token that is safe to put in a password reset link", ["secrets"]),
    ("show the differences between two versions of a text like a patch would", ["difflib"]),
    ("convert a time between time zones using names like Europe/Paris", ["zoneinfo"]),
    ("parse a settings file made of [sections] with key = value lines", ["configparser"]),
    ("wrap a long paragraph so that no line is wider than 70 characters", ["textwrap"]),
    ("pack integers into bytes in a fixed binary layout to write a file header", ["struct"]),
    ("exact arithmetic for money so that adding 0.1 and 0.2 is not slightly off", ["decimal"]),
    ("send an email through my provider's mail server after logging in", ["smtplib"]),
    ("unpack a .tar.gz archive into a folder", ["tarfile"]),
    ("run several downloads at the same time on a pool of worker threads and collect the results",
     ["concurrent.futures", "concurrent"]),
    ("make a class that only holds fields, with the constructor and repr written for me", ["dataclasses"]),
    ("get the mean, median and standard deviation of a list of measurements", ["statistics"]),
    ("split a command line string into arguments the way a shell would, respecting quotes", ["shlex"]),
    ("guess what kind of content a file holds from its file name extension", ["mimetypes"]),
    ("read a TOML configuration file", ["tomllib"]),
    ("refer to objects in a cache without keeping them alive", ["weakref"]),
]
MAN: list[Question] = [
    ("show the last 20 lines of a log and keep printing new lines as they are written", ["tail"]),
    ("find out how much disk space each folder under my home is using", ["du"]),
    ("count how many lines a file has", ["wc"]),
    ("start a command so that it keeps running after I log out of the ssh session", ["nohup"]),
    ("give a file to another user so that they own it", ["chown"]),
    ("show which TCP ports this machine is listening on", ["ss"]),
    ("list the disks and partitions attached and where they are mounted", ["lsblk", "findmnt"]),
    ("create a new key pair for logging into servers without a password", ["ssh-keygen"]),
    ("install my public key on a server so I can log in without typing my password", ["ssh-copy-id"]),
    ("order the lines of a file alphabetically and drop the repeated ones", ["sort", "uniq"]),
    ("replace every occurrence of a word in a file without opening an editor", ["sed"]),
    ("overwrite a file several times so its contents cannot be recovered", ["shred"]),
    ("create a 1 GB file instantly without writing all the zeros", ["fallocate", "truncate"]),
    ("how long has the machine been up and what is its load", ["uptime", "w"]),
    ("keep a process on one CPU core only", ["taskset"]),
    ("lower the disk priority of a backup job so it does not slow down the machine", ["ionice"]),
    ("see the kernel's messages since boot, like driver errors", ["dmesg"]),
    ("add a new user account with a home directory", ["useradd"]),
    ("show the logs of one service since yesterday", ["journalctl"]),
    ("turn a number of bytes into a human readable size like 1.5M", ["numfmt"]),
    ("print the current time as the number of seconds since 1970", ["date"]),
    ("run a program every two seconds and watch its output change", ["watch"]),
    ("how much RAM is free and how much swap is in use", ["free"]),
    ("verify a download against the SHA-256 value the website published", ["sha256sum"]),
]

HOLDOUT: dict[str, list[Question]] = {"pydoc": PYDOC, "man": MAN}
