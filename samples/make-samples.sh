#!/bin/sh
# Rebuild the sample recordings in this folder with festival (voice cmu_us_slt_arctic_hts from
# Debian's festvox-us-slt-hts) and ffmpeg.  The output is byte-for-byte reproducible.
# Usage: sh samples/make-samples.sh
set -eu
cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# speak NAME TEXT: festival's slt voice -> $scratch/NAME.wav (mono, 32 kHz)
speak() {
    printf '%s\n' "$2" | text2wave -eval '(voice_cmu_us_slt_arctic_hts)' -o "$scratch/$1.wav"
}

# encode NAME OUTPUT OPTIONS...: $scratch/NAME.wav -> OUTPUT, without tags or encoder versions
encode() {
    name=$1 output=$2
    shift 2
    ffmpeg -nostdin -v error -y -i "$scratch/$name.wav" "$@" \
        -map_metadata -1 -fflags +bitexact -flags:a +bitexact "$output"
}

speak greeting "Good morning everyone and welcome to the meeting. I think we should start the meeting now."
encode greeting "greeting.wav" -ar 16000 -ac 1 -c:a pcm_s16le

mkdir -p "会议 meeting"
speak standup "We will meet at the office tomorrow morning. We need to finish this work by Friday. \
Let me know if you have any questions. Thank you very much for your help."
encode standup "会议 meeting/weekly standup.mp3" -ar 44100 -ac 2 -c:a libmp3lame -b:a 48k

speak message "The train leaves at nine in the morning. Please call me back when you get home."
encode message "voicemail.ogg" -ar 16000 -ac 1 -c:a libvorbis -q:a 2

speak note "I would like a cup of coffee please. The weather is very nice today."
encode note "voice note.m4a" -ar 44100 -ac 1 -c:a aac -b:a 32k -movflags +faststart

# A call at 8 kHz like a phone line: the agent speaks on the left channel, then, half a second
# after the agent stops, the customer answers on the right channel.
mkdir -p calls
speak agent "Thank you very much for your help. Turn left at the next corner."
speak customer "The dog ran across the road. Let me know if you have any questions."
delay=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$scratch/agent.wav" |
    awk '{ printf "%d", $1 * 1000 + 500 }')
ffmpeg -nostdin -v error -y -i "$scratch/agent.wav" -i "$scratch/customer.wav" -filter_complex \
    "[0:a]aresample=8000,apad[l];[1:a]aresample=8000,adelay=$delay,apad[r];[l][r]join=inputs=2:channel_layout=stereo" \
    -t 10 -c:a flac -map_metadata -1 -fflags +bitexact -flags:a +bitexact "calls/support call.flac"
